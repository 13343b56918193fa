"""`sigmasight dev` (Dagster webserver, daemon and code server) in a subprocess, for the tests
and benchmarks that drive the daemon path the way a user does: drops in the inbox, the UI's
Materialize button (through the webserver's GraphQL API), schedules."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from sigmasight_pipeline.process_groups import end_group, group_members
from sigmasight_pipeline.resources.database import PROJECT_ROOT

LOCATION_STATUS_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
)
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevServer:
    """`sigmasight dev` on `database_url`, with its own DAGSTER_HOME and inbox."""

    def __init__(
        self, database_url: str, dagster_home: Path, inbox: Path, env: Mapping[str, str] = ()
    ):
        self.database_url = database_url
        self.dagster_home = dagster_home
        self.inbox = inbox
        self.port = free_port()
        self.extra_env = dict(env)
        self.process: subprocess.Popen | None = None
        self.log = dagster_home / "dev.log"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "DAGSTER_HOME": str(self.dagster_home),
            "SIGMASIGHT_INBOX": str(self.inbox),
            "SIGMASIGHT_NO_DOTENV": "1",
            **self.extra_env,
        }

    def start(self, timeout: float = 180.0) -> float:
        """Start it and wait until the webserver has loaded the code location; the seconds."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sigmasight_pipeline.cli", "dev", "--port", str(self.port)],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends every child
            )
        while time.perf_counter() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"sigmasight dev exited: see {self.log}")
            if self._location_loaded():
                return time.perf_counter() - began
            time.sleep(0.5)
        raise TimeoutError(f"sigmasight dev not ready after {timeout:.0f} s: see {self.log}")

    def _location_loaded(self) -> bool:
        query = json.dumps({"query": LOCATION_STATUS_QUERY}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=query,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read().decode()
        except OSError:
            return False
        return '"LOADED"' in body

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop it and wait until every process it started has exited; what is left after
        `timeout` is killed. SIGTERM (and SIGINT, SIGHUP) goes to `sigmasight dev` alone, as a
        supervisor sends it: it stops Dagster's services. SIGKILL goes to every process at
        once, as when the machine dies."""
        if self.process is None:
            return
        groups = self.process_groups()
        if sig == signal.SIGKILL:
            for group in groups:
                end_group(group, signal.SIGKILL, timeout, reap=self.process.poll)
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        for group in groups:
            end_group(group, None, timeout, reap=self.process.poll)

    def process_groups(self) -> list[int]:
        """`sigmasight dev`'s process group and its services' (they run in a group of their
        own), while any of their processes is alive."""
        import psutil

        assert self.process is not None
        groups = [self.process.pid]
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(ProcessLookupError):
                    group = os.getpgid(child.pid)
                    if group not in groups:
                        groups.append(group)
        return [g for g in groups if group_members(g)]

    def kill_daemon(self) -> int:
        """SIGKILL the dagster-daemon process of this server (not the webserver); its pid."""
        import psutil

        assert self.process is not None
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if "dagster-daemon" in " ".join(child.cmdline()) or child.cmdline()[-2:] == [
                "daemon",
                "run",
            ]:
                child.kill()
                return child.pid
        raise LookupError("no dagster-daemon process under sigmasight dev")

    def graphql_client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def instance(self) -> DagsterInstance:
        """The same instance the server uses (this process's env must point at it too)."""
        return DagsterInstance.from_config(str(self.dagster_home))


def wait_for_runs(
    instance: DagsterInstance, filters: RunsFilter, count: int = 1, timeout: float = 300.0
) -> list:
    """Wait until `count` runs match `filters` and all of them have finished; the runs."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        found = instance.get_runs(filters=filters)
        if len(found) >= count and all(r.status in TERMINAL for r in found):
            return found
        time.sleep(0.5)
    raise TimeoutError(f"runs {filters} not finished after {timeout:.0f} s")
