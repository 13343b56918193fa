"""Nothing outlives `sigmasight dev`: the services' process group is ended whole, stragglers
included, both by `sigmasight dev` itself and by the tests' `DevServer.stop`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sigmasight_pipeline.devserver import DevServer
from sigmasight_pipeline.process_groups import group_members

# A leader that exits on SIGTERM or SIGINT, leaving a child that ignores SIGTERM (as a Dagster
# code server can hang after SIGTERM): the child would outlive the leader for ever.
STRAGGLER = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('started', "
    "flush=True); time.sleep(300)"
)
LEADER = f"{sys.executable} -c \"{STRAGGLER}\" & trap 'exit 0' TERM INT; wait"

# `sigmasight dev`'s supervision of its services, with LEADER standing in for `dagster dev`.
SERVE = """
import sys
from sigmasight_pipeline import cli
cli.DEV_STOP_SECONDS = 2.0
sys.exit(cli._serve_until_stopped(["sh", "-c", sys.argv[1]], cwd="."))
"""


def test_stop_waits_for_every_member_and_kills_what_stays(tmp_path: Path) -> None:
    server = DevServer("postgresql://unused", tmp_path, tmp_path / "inbox")
    server.process = subprocess.Popen(
        ["sh", "-c", LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert server.process.stdout is not None
    assert server.process.stdout.readline().strip() == "started"
    group = server.process.pid
    began = time.monotonic()
    server.stop(timeout=2.0)
    assert not group_members(group)
    assert time.monotonic() - began >= 2.0  # the straggler outlived SIGTERM and was killed
    assert server.process.returncode == 0  # the leader itself ended on SIGTERM


def test_stop_of_a_group_that_already_ended_returns_at_once(tmp_path: Path) -> None:
    server = DevServer("postgresql://unused", tmp_path, tmp_path / "inbox")
    server.process = subprocess.Popen(["true"], start_new_session=True)
    server.process.wait()
    began = time.monotonic()
    server.stop(timeout=5.0)
    assert time.monotonic() - began < 2.0


def _services_of(wrapper: subprocess.Popen) -> int:
    """The process group of the services `wrapper` started, once they are up."""
    import psutil

    assert wrapper.stdout is not None
    assert wrapper.stdout.readline().strip() == "started"
    (leader,) = psutil.Process(wrapper.pid).children()
    return os.getpgid(leader.pid)


def test_sigmasight_dev_passes_a_signal_on_and_ends_its_services_whole() -> None:
    """A supervisor's SIGTERM (or Ctrl-C's SIGINT) to `sigmasight dev` alone reaches its
    services; what has not stopped in time is killed and named, and `sigmasight dev` exits
    with its services' exit code."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        wrapper = subprocess.Popen(
            [sys.executable, "-c", SERVE, LEADER], stdout=subprocess.PIPE, text=True
        )
        services = _services_of(wrapper)
        assert services != os.getpgid(wrapper.pid)  # a group of their own
        wrapper.send_signal(sig)
        out, _ = wrapper.communicate(timeout=30)
        assert wrapper.returncode == 0, out
        assert not group_members(services)  # the straggler too
        assert "1 Dagster process(es) still running 2 s after dagster dev exited were killed" in out
