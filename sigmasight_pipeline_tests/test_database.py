"""The embedded server's start: it survives what a killed process leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sigmasight_pipeline.resources.database import PROJECT_ROOT, repair_handle_list


@pytest.mark.parametrize("left", ["", "[4242, 43", "null", '["x"]'])
def test_an_unreadable_handle_list_is_reset(tmp_path: Path, left: str) -> None:
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(left)
    assert repair_handle_list(tmp_path)
    assert json.loads(handles.read_text()) == []
    assert [p.name for p in tmp_path.iterdir()] == [".handle_pids.json"]


def test_a_readable_handle_list_is_left_alone(tmp_path: Path) -> None:
    handles = tmp_path / ".handle_pids.json"
    handles.write_text("[101, 202]")
    assert not repair_handle_list(tmp_path)
    assert handles.read_text() == "[101, 202]"
    assert not repair_handle_list(tmp_path / "absent")


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SIGMASIGHT_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "sigmasight_pipeline.cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_server_starts_after_a_process_was_killed_writing_its_handle_list(
    tmp_path: Path,
) -> None:
    """pgserver truncates and rewrites `.handle_pids.json`; a process SIGKILLed between the two
    leaves it empty, and every start after it failed with a JSONDecodeError."""
    home = tmp_path / "home"
    try:
        first = _cli(home, "db-url")
        assert first.returncode == 0, first.stderr
        handles = home / "pgdata" / ".handle_pids.json"
        handles.write_text("")  # what the killed writer leaves
        again = _cli(home, "db-url")
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == first.stdout.strip()
        assert isinstance(json.loads(handles.read_text()), list)
    finally:
        _cli(home, "db", "stop")


def test_a_new_embedded_server_gets_the_settings_for_bulk_writes(tmp_path: Path) -> None:
    """A fresh data folder starts with PostgreSQL's defaults (shared_buffers 128 MB,
    max_wal_size 1 GB); the start that created it sets `EMBEDDED_SETTINGS` and restarts the
    server it has just started (shared_buffers needs a restart). A start that finds them set
    changes nothing."""
    import time

    import psycopg

    from sigmasight_pipeline.resources.database import EMBEDDED_SETTINGS, tune_embedded_server

    home = tmp_path / "home"
    try:
        started = _cli(home, "db-url")
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        names = list(EMBEDDED_SETTINGS)
        query = "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)"
        deadline = time.monotonic() + 10
        while True:  # the reload is a signal: the postmaster applies it a moment later
            with psycopg.connect(url) as conn:
                settings = dict(conn.execute(query, (names,)).fetchall())
            if settings == EMBEDDED_SETTINGS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert settings == EMBEDDED_SETTINGS
        assert tune_embedded_server(url) == []
    finally:
        _cli(home, "db", "stop")
