"""`DevServer.stop` ends the whole process group, stragglers included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sigmasight_pipeline.devserver import DevServer, _group_alive

# A leader that exits on SIGTERM, leaving a child that ignores it (as a Dagster code server can
# hang after SIGTERM): the child would outlive the leader for ever.
STRAGGLER = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('started', "
    "flush=True); time.sleep(300)"
)
LEADER = f"{sys.executable} -c \"{STRAGGLER}\" & trap 'exit 0' TERM; wait"


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
    assert not _group_alive(group)
    assert time.monotonic() - began >= 2.0  # the straggler outlived SIGTERM and was killed
    assert server.process.returncode == 0  # the leader itself ended on SIGTERM


def test_stop_of_a_group_that_already_ended_returns_at_once(tmp_path: Path) -> None:
    server = DevServer("postgresql://unused", tmp_path, tmp_path / "inbox")
    server.process = subprocess.Popen(["true"], start_new_session=True)
    server.process.wait()
    began = time.monotonic()
    server.stop(timeout=5.0)
    assert time.monotonic() - began < 2.0
