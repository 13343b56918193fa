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

from sigmasight_pipeline.resources.database import PROJECT_ROOT

LOCATION_STATUS_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
)
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_alive(group: int) -> bool:
    """Whether process group `group` has a member that has not exited (zombies, exited but
    not yet reaped by their parent, do not count)."""
    import psutil

    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == group:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


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
        """Signal the whole process group (webserver, daemon, code servers, run workers) and
        wait until every member has exited; what is left after `timeout` is killed.

        Waiting for `sigmasight dev` alone is not enough: a Dagster code server can outlive it
        for ever after SIGTERM (its gRPC server stops, but the thread its main thread joins
        waits for an event nothing sets)."""
        if self.process is None:
            return
        group = self.process.pid
        if not _group_alive(group):
            return
        with contextlib.suppress(ProcessLookupError):  # every member exited just now
            os.killpg(group, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.process.poll()  # reaps the leader
            if not _group_alive(group):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout)

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
