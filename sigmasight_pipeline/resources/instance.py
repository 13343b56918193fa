"""The Dagster instance: dagster.yaml on the same PostgreSQL as our tables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterInstance, DagsterRun
from dagster._config.config_schema import UserConfigSchema
from dagster._core.event_api import EventLogEntry
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine
from sqlalchemy.engine import Connection

from sigmasight_pipeline.resources.database import (
    PROJECT_ROOT,
    migrate,
    reachable_database_url,
    sigmasight_home,
)

INSTANCE_YAML = PROJECT_ROOT / "dagster.yaml"


def prepare_environment(url: str | None = None, write_dotenv: bool = True) -> str:
    """Database up and migrated, Dagster pointed at it; returns the database URL.

    Sets DATABASE_URL (so child processes such as `dagster dev` use the same server) and
    DAGSTER_HOME (.sigmasight/dagster, a folder holding a link to the checkout's dagster.yaml,
    whose storage is `SigmaSightStorage` on that same database).
    """
    url = url or reachable_database_url()
    migrate(url)
    os.environ["DATABASE_URL"] = url
    home = Path(os.environ.get("DAGSTER_HOME") or sigmasight_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if not link.exists():
        link.symlink_to(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    if write_dotenv and not os.environ.get("SIGMASIGHT_NO_DOTENV"):
        _write_dotenv()
    return url


DOTENV_KEYS = ("DAGSTER_HOME", "DATABASE_URL")


def dagster_storage_url(url: str) -> str:
    """dagster-postgres is written for psycopg2; SQLAlchemy 2.1 would otherwise pick psycopg 3."""
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


def _write_dotenv() -> None:
    """Write `.env` in the checkout (git-ignored): the plain `dagster` CLI loads it before it
    opens the instance, so `dagster asset materialize ...` run here uses the same instance and
    database as the last `sigmasight` command."""
    lines = [f"{key}={os.environ[key]}" for key in DOTENV_KEYS]
    text = "# written by sigmasight; the dagster CLI reads it\n" + "\n".join(lines) + "\n"
    path = PROJECT_ROOT / ".env"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def dagster_instance() -> DagsterInstance:
    prepare_environment(os.environ.get("DATABASE_URL") or None)
    return DagsterInstance.get()


STORAGE_POOL_SIZE = 4


class SigmaSightEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event log, with two fixes:

    - a run's planned asset check is stored as one row per partition, and dagster-postgres
      serializes the same event again for every row (a 90-partition run of the portfolio
      assets, 22 checks: about 2,000 serializations and 10 s of the daemon's time before the
      run is even queued). Here it is serialized once;
    - whether the asset key table has a column is asked of the database's catalog on every
      read of asset records and every asset event stored (a SQLAlchemy reflection, several
      per step). A column, once found, is remembered: `dagster instance migrate` adds them
      and nothing removes them.
    """

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        found: set[str] = self.__dict__.setdefault("_asset_key_columns_found", set())
        if column_name not in found and super()._has_asset_key_col_on_connection(conn, column_name):
            found.add(column_name)
        return column_name in found

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        planned = event.get_dagster_event().asset_check_planned_data
        subset = planned.partitions_subset
        serialized = serialize_value(event)
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialized,
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        keys = subset.get_partition_keys() if subset else [None]
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert().values([{**row, "partition": k} for k in keys])
            )


class SigmaSightStorage(DagsterPostgresStorage):
    """dagster-postgres storage on our database, for every process that opens the instance
    (the `dagster` CLI, webserver, daemon and run workers), with two additions:

    - the embedded server is started if it is down (an external `DATABASE_URL` that cannot be
      reached fails with one line saying what to do);
    - run, event and schedule storage keep a small connection pool. dagster-postgres opens a
      new connection per event unless told otherwise (only its webserver is), and a run over
      90 partitions writes thousands of events: pooled, a daemon-launched run costs what the
      same run costs in-process.

    Configured in dagster.yaml with no fields: the database is `DATABASE_URL` or the embedded
    server, the same as our tables'.
    """

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SigmaSightStorage:
        url = reachable_database_url()
        storage = cls(postgres_url=dagster_storage_url(url), inst_data=inst_data)
        storage._event_log_storage = SigmaSightEventLogStorage(storage.postgres_url)
        for part in (storage.run_storage, storage.event_log_storage, storage.schedule_storage):
            # What dagster-postgres's optimize_for_webserver does, with a pool of several
            # connections: storing one event can take a second connection (asset tags), and
            # with a pool of one that connection is opened and closed for every event.
            part._engine = create_pg_engine(  # type: ignore[attr-defined]
                part.postgres_url,  # type: ignore[attr-defined]
                part._token_provider,  # type: ignore[attr-defined]
                isolation_level="AUTOCOMMIT",
                pool_size=STORAGE_POOL_SIZE,
                max_overflow=10,
                pool_recycle=3600,
            )
        return storage


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher (a run worker process per run, started by the code server)
    that can also tell the daemon's run monitoring whether a run's worker is still alive.

    The default launcher cannot, so a run whose worker died with its machine or its
    `sigmasight dev` session stayed STARTED for ever. This one finds the worker's pid in the
    run's RUN_START event (its own process wrote it) and checks that process on this machine:
    gone, the run is marked failed by run monitoring and retried by run retries (dagster.yaml),
    and its assets, being idempotent partition rewrites, are simply computed again. For a single
    machine; on a cluster the K8s run launcher does its own health checks (deploy/).
    """

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        status, note = run_process_status(self._instance, run)
        if status is WorkerStatus.FAILED:
            return CheckRunHealthResult(status, note, transient=False)
        if status is WorkerStatus.RUNNING:
            return CheckRunHealthResult(status, run_worker_id=note)
        return CheckRunHealthResult(status, note)


def run_process_status(instance: DagsterInstance, run: DagsterRun) -> tuple[WorkerStatus, str]:
    """Whether the process that started `run` (the pid in its RUN_START event, looked up on
    this machine) still runs: (RUNNING, its pid), (FAILED, why) or (UNKNOWN, why) before the
    run has started."""
    import psutil

    started = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
    event = started[-1].dagster_event if started else None
    if event is None or event.pid is None:
        return WorkerStatus.UNKNOWN, "no RUN_START event yet"
    try:
        process = psutil.Process(event.pid)
        alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        same = process.create_time() <= started[-1].timestamp + 1.0  # not a reused pid
    except psutil.Error:
        alive = same = False
    if alive and same:
        return WorkerStatus.RUNNING, str(event.pid)
    return WorkerStatus.FAILED, f"run worker process {event.pid} is gone"
