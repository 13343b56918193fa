"""PostgreSQL: the embedded server (pgserver) or `DATABASE_URL`, connections and migrations."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
from dagster import ConfigurableResource

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = PROJECT_ROOT / "sql"
SCHEMA = "sigmasight"


def sigmasight_home() -> Path:
    """Where local state lives (embedded database, Dagster home): `.sigmasight/` in the checkout."""
    return Path(os.environ.get("SIGMASIGHT_HOME", PROJECT_ROOT / ".sigmasight")).resolve()


@contextmanager
def _home_lock(name: str) -> Iterator[None]:
    """An exclusive lock file under `sigmasight_home()`, held by one process at a time."""
    home = sigmasight_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def _embedded_server_url() -> str:
    import pgserver  # imported lazily: only the embedded mode needs it

    pgdata = sigmasight_home() / "pgdata"
    log.info("starting embedded PostgreSQL in %s", pgdata)
    # pgserver creates its system user (as root) before taking its own lock, so two processes
    # starting it at once race on `useradd`; ours serializes the whole start.
    with _home_lock("pgserver.lock"):
        # cleanup_mode=None keeps the server running after this process, so the next command
        # reuses it.
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def database_url() -> str:
    """`DATABASE_URL` when set, else the URL of the embedded server (started if needed)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    return url or _embedded_server_url()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def yoyo_url(url: str) -> str:
    """yoyo-migrations wants `postgresql+psycopg://` and the socket dir as a `host` query arg."""
    parts = urlsplit(url)
    query = urlencode({k: v[0] for k, v in parse_qs(parts.query).items()})
    scheme = "postgresql+psycopg"
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    """A new psycopg connection (autocommit off; use `with conn.transaction()` or commit)."""
    return psycopg.connect(url or database_url(), **kwargs)


@contextmanager
def transaction(url: str | None = None) -> Iterator[psycopg.Connection]:
    """A connection whose work commits at the end of the block and rolls back on error."""
    with connect(url) as conn, conn.transaction():
        yield conn


def migrate(url: str | None = None) -> list[str]:
    """Apply the pending migrations in `sql/` (once each, recorded by yoyo); returns their ids."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(url or database_url()))
    migrations = read_migrations(str(SQL_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def create_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` if missing; returns its URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresResource(ConfigurableResource):
    """Our tables' database, for assets, sensors and scripts that read or write outside the IO
    manager (positions, existing prices). Default: `DATABASE_URL` or the embedded server."""

    database_url: str | None = None

    def url(self) -> str:
        return self.database_url or database_url()

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url()) as conn:
            yield conn
