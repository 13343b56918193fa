"""Process groups that end whole: `sigmasight dev` runs Dagster's services (webserver, daemon,
code servers, run workers) in a process group of their own and ends every member of it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

import psutil

__all__ = ["end_group", "group_members"]


def group_members(group: int) -> list[int]:
    """The pids of process group `group` that have not exited (zombies, exited but not yet
    reaped by their parent, do not count)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == group:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def end_group(
    group: int,
    sig: int | None = signal.SIGTERM,
    timeout: float = 30.0,
    reap: Callable[[], object] = lambda: None,
) -> list[int]:
    """Send `sig` to process group `group` (None: send nothing, its members were already told)
    and wait until every member has exited; SIGKILL what is left after `timeout`. `reap` is
    called while waiting, for a parent to reap its child (e.g. `Popen.poll`). The pids that
    had to be killed."""
    if not group_members(group):
        return []
    if sig is not None:
        with contextlib.suppress(ProcessLookupError):  # every member exited just now
            os.killpg(group, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if not group_members(group):
            return []
        time.sleep(0.1)
    left = group_members(group)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    while group_members(group) and time.monotonic() < deadline + 10.0:
        reap()
        time.sleep(0.1)
    return left
