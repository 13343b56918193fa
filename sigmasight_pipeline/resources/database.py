"""PostgreSQL: the embedded server (pgserver) or `DATABASE_URL`, connections and migrations."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
from dagster import ConfigurableResource
from psycopg import sql

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
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    pgdata = embedded_pgdata()
    log.info("starting embedded PostgreSQL in %s", pgdata)
    # pgserver creates its system user (as root) before taking its own lock, so two processes
    # starting it at once race on `useradd`; ours serializes the whole start.
    with _home_lock("pgserver.lock"):
        repair_handle_list(pgdata)
        # pgserver caches a handle per data folder and would hand back a stopped server's:
        # drop it so the server is started again if it was stopped since.
        pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)
        # cleanup_mode=None keeps the server running after this process, so the next command
        # reuses it.
        info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
        was_running = info is not None and info.is_running()
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        on_restart = tune_embedded_server(server.get_uri())
        if on_restart and not was_running:  # just started by this process: nobody uses it yet
            try:
                pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=server.system_user)
            except subprocess.CalledProcessError as exc:
                wanted = ", ".join(f"{n} = {EMBEDDED_SETTINGS[n]}" for n in on_restart)
                raise DatabaseUnavailable(
                    f"embedded PostgreSQL did not restart with {wanted} (its log: "
                    f"{pgdata / 'log'}); if the machine cannot give it that memory, set "
                    "DATABASE_URL to a server of your own"
                ) from exc
            log.info("embedded PostgreSQL restarted for %s", ", ".join(on_restart))
        elif on_restart:
            log.warning(
                "embedded PostgreSQL: %s applies when the server restarts (sigmasight db stop)",
                ", ".join(on_restart),
            )
    return server.get_uri()


# The embedded server's settings for our bulk writes (a 1,000-portfolio backfill writes about
# 6 GB). PostgreSQL's defaults are for a small machine: with max_wal_size 1 GB that backfill
# checkpointed every 15 s (each checkpoint makes the next change of every page write the
# whole page to the WAL again), and 128 MB of shared buffers kept evicting the pages of the
# indexes it was filling.
EMBEDDED_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "4GB", "checkpoint_timeout": "15min"}


def tune_embedded_server(url: str) -> list[str]:
    """Set `EMBEDDED_SETTINGS` on the embedded server where they differ (ALTER SYSTEM, then a
    reload); the names of those that take effect only when the server restarts."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name), context FROM pg_settings WHERE name = ANY(%s)",
            (list(EMBEDDED_SETTINGS),),
        ).fetchall()
        changed = {
            name: context for name, value, context in rows if EMBEDDED_SETTINGS[name] != value
        }
        for name in changed:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(EMBEDDED_SETTINGS[name])
                )
            )
        if changed:
            conn.execute("SELECT pg_reload_conf()")
            log.info("embedded PostgreSQL: set %s", ", ".join(changed))
    return [name for name, context in changed.items() if context == "postmaster"]


def repair_handle_list(pgdata: Path) -> bool:
    """Reset pgserver's list of processes using the server if it cannot be read; True if it was.

    pgserver rewrites `.handle_pids.json` in place on every start and exit, so a process killed
    while writing it (SIGKILL, the OOM killer) leaves it empty, and every later start then
    fails to parse it. The list only decides which process stops the server on exit, and ours
    never do (`cleanup_mode=None`), so an empty list loses nothing."""
    import pgserver

    path = pgdata / ".handle_pids.json"
    with pgserver.PostgresServer._lock:  # the lock pgserver holds while it rewrites the list
        if not path.exists():
            return False
        text = path.read_text()
        try:
            pids = json.loads(text)
        except ValueError:
            pids = None
        if isinstance(pids, list) and all(isinstance(pid, int) for pid in pids):
            return False
        log.warning("reset %s: it held %r, not a list of pids", path, text[:80])
        scratch = path.with_name(path.name + ".new")
        scratch.write_text("[]")
        os.replace(scratch, path)
        return True


def database_url() -> str:
    """`DATABASE_URL` when set, else the URL of the embedded server (started if needed)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    return url or _embedded_server_url()


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message is one line saying what to do."""


def embedded_pgdata() -> Path:
    return sigmasight_home() / "pgdata"


def is_embedded(url: str) -> bool:
    """True when `url` points at this checkout's embedded server (its socket directory)."""
    hosts = parse_qs(urlsplit(url).query).get("host", [])
    return any(Path(h).resolve() == embedded_pgdata().resolve() for h in hosts)


def reachable_database_url() -> str:
    """`database_url()`, making sure the server answers: the embedded server is started if it
    was stopped (`sigmasight db stop`, a reboot); an external server that does not answer
    raises DatabaseUnavailable with one line saying what to do."""
    url = database_url()
    if is_embedded(url):
        _embedded_server_url.cache_clear()
        _embedded_server_url()  # (re)starts the server; `url` may name another database on it
        return url
    try:
        with psycopg.connect(url, connect_timeout=5):
            return url
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach DATABASE_URL ({_redacted(url)}): {reason}. Start that server, or "
            "unset DATABASE_URL to use the embedded one (`sigmasight db-url` starts it)."
        ) from None


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def embedded_status() -> dict[str, object]:
    """Whether the embedded server runs: data folder, pid, socket URL and data size."""
    from pgserver.utils import PostmasterInfo

    pgdata = embedded_pgdata()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    running = bool(info is not None and info.is_running())
    size = sum(f.stat().st_size for f in pgdata.rglob("*") if f.is_file()) if pgdata.exists() else 0
    return {
        "pgdata": str(pgdata),
        "initialized": (pgdata / "PG_VERSION").exists(),
        "running": running,
        "pid": info.pid if running and info is not None else None,
        "url": info.get_uri() if running and info is not None else None,
        "bytes": size,
    }


def stop_embedded() -> bool:
    """Stop the embedded server (fast shutdown); False if it was not running."""
    import pgserver
    from pgserver.utils import PostmasterInfo

    pgdata = embedded_pgdata()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    with _home_lock("pgserver.lock"):
        pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
        command = [str(pg_ctl), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
        if os.geteuid() == 0:  # pgserver runs the server as its own system user under root
            command = ["su", "pgserver", "-c", " ".join(shlex.quote(c) for c in command)]
        subprocess.run(command, check=True, capture_output=True, text=True)
    _embedded_server_url.cache_clear()
    return True


def analyze(url: str, tables: Iterable[str]) -> None:
    """Refresh the planner's statistics of `tables` (schema sigmasight) now.

    Autovacuum analyzes a table some seconds after a bulk write, and a query planned before
    that sees the old row counts: in a CI run, a join of positions, portfolios, users and tags
    right after 100,000 positions were loaded was still running 18 minutes later; planned with
    fresh statistics it is a merge join. ANALYZE samples at most 30,000 rows per table, so
    this stays cheap as the tables grow."""
    query = sql.SQL("ANALYZE {}").format(
        sql.SQL(", ").join(sql.Identifier(SCHEMA, t) for t in tables)
    )
    with connect(url, autocommit=True) as conn:
        conn.execute(query)


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
