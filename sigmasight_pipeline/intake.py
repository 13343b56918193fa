"""Portfolio CSV intake: the inbox tick shared by the inbox sensor and `sigmasight ingest`.

A file `<username>__<portfolio name>.csv` dropped in the inbox (`SIGMASIGHT_INBOX`) is read
once, fingerprinted (sha256 of its bytes), validated, then loaded by `load_portfolio` in ONE
transaction that also records the load in `sigmasight.portfolio_loads`, and moved to the sibling
folder `processed/<timestamp>__<name>`. A file for an existing portfolio is a new version of
its holdings, dated on the latest closed session (`sigmasight ingest --as-of` for another):
see `holdings`. An invalid file loads nothing: it goes to `rejected/<timestamp>__<name>`
beside `<that>.errors.json` listing every bad row, field and reason (bad names, unknown users,
refused changes, e.g. a file that would close every held position without
`--allow-close-all`, and database refusals included). No file is ever deleted.

Crash consistency: the load record commits with the positions. A file whose sha256 equals the
portfolio's current load is "unchanged": it is moved (to the recorded `stored_as` name when that
is still free, i.e. after a crash between load and move) and never loaded twice. A transient
database error (connection lost, deadlock, timeout) leaves the file in the inbox for the next
tick. Loads take a transaction-scoped advisory lock, so concurrent intakes (sensor and CLI) are
serialized and load ids commit in increasing order (the sensor's cursor relies on that).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

import psycopg

from sigmasight_pipeline.holdings import (
    HoldingsChanges,
    HoldingsError,
    SessionError,
    effective_session,
)
from sigmasight_pipeline.inbox import (
    ERRORS_SUFFIX,
    SETTLE_SECONDS,
    Folders,
    fingerprint,
    free_path,
    is_candidate,
    move,
    original_name,
    ready_files,
    stamped,
    write_json,
)
from sigmasight_pipeline.portfolio_csv import (
    MAX_FILE_BYTES,
    ParsedPortfolio,
    PortfolioCSVError,
    RowError,
    error_report,
    read_portfolio_csv,
    validate_portfolio_text,
)
from sigmasight_pipeline.portfolios import (
    LoadSource,
    UnknownUserError,
    get_user_id,
    load_portfolio,
    portfolio_file_owner,
)
from sigmasight_pipeline.resources.database import analyze, connect
from sigmasight_pipeline.resources.market_data import MarketDataProvider

__all__ = [
    "SETTLE_SECONDS",
    "FileOutcome",
    "Folders",
    "LoadOptions",
    "LoadRecord",
    "Status",
    "fingerprint",
    "ingest_command",
    "latest_load_id",
    "loads_after",
    "process_file",
    "process_files",
    "process_inbox",
    "ready_files",
]

CLI_SETTLE_WAIT_SECONDS = 10.0  # how long `sigmasight ingest` waits for such files
INTAKE_LOCK = "sigmasight.portfolio_loads"  # advisory lock key (hashtext) serializing loads
# What a load writes in bulk: their statistics are refreshed after it (see `analyze`).
LOADED_TABLES = ("positions", "position_tags", "position_events", "portfolios", "tags")
SHOWN_ERRORS = 3  # errors quoted in a one-line outcome

Say = Callable[[str], None]


class Status(StrEnum):
    """What happened to a file."""

    LOADED = "loaded"  # positions loaded, file in processed/
    UNCHANGED = "unchanged"  # same content as the portfolio's current load: file in processed/
    REJECTED = "rejected"  # nothing loaded, file and report in rejected/
    SKIPPED = "skipped"  # not processed now (still changing, gone, database unavailable)


@dataclass(frozen=True)
class LoadRecord:
    """One row of `sigmasight.portfolio_loads`; `current` if no later load replaced it."""

    id: int
    portfolio_id: int
    username: str
    portfolio: str
    sha256: str
    file_name: str
    stored_as: str
    positions: int
    replaced: bool
    loaded_by: str
    loaded_at: datetime
    current: bool
    effective_session: date | None = None


@dataclass(frozen=True)
class FileOutcome:
    """The result of processing one file."""

    file: Path
    status: Status
    sha256: str | None = None
    username: str | None = None
    portfolio: str | None = None
    load: LoadRecord | None = None
    changes: HoldingsChanges | None = None
    tags_created: int = 0
    moved_to: Path | None = None
    report: Path | None = None
    errors: tuple[RowError, ...] = ()
    reason: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """One line for people: what happened, why, and where the file went."""
        name = self.file.name
        where = f" -> {_short(self.moved_to)}" if self.moved_to else ""
        took = f" ({self.seconds:.2f} s)"
        if self.status is Status.LOADED and self.load is not None:
            load = self.load
            kind = "replaced" if load.replaced else "new portfolio"
            changes = f"; {self.changes.describe()}" if self.changes else ""
            return (
                f"loaded    {name}: {load.username} / {load.portfolio}, {load.positions:,} "
                f"positions ({kind} {load.portfolio_id}), {self.tags_created} new tags, "
                f"load #{load.id}{changes}{where}{took}"
            )
        if self.status is Status.UNCHANGED and self.load is not None:
            return (
                f"unchanged {name}: same content as load #{self.load.id} of "
                f"{self.load.username} / {self.load.portfolio}; nothing loaded{where}{took}"
            )
        if self.status is Status.REJECTED:
            count = len(self.errors)
            shown = "; ".join(str(e) for e in self.errors[:SHOWN_ERRORS])
            more = f"; (+{count - SHOWN_ERRORS} more)" if count > SHOWN_ERRORS else ""
            report = f"; report {_short(self.report)}" if self.report else ""
            return (
                f"rejected  {name}: {count} error{'s' if count != 1 else ''}: "
                f"{shown}{more}{where}{report}"
            )
        return f"skipped   {name}: {self.reason}"


def _short(path: Path | None) -> str:
    """`processed/<name>`: the folder and the file, enough to find it."""
    return "" if path is None else f"{path.parent.name}/{path.name}"


# ---------------------------------------------------------------------------------------------
# Load records


_LOAD_SELECT = """
    SELECT l.id, l.portfolio_id, u.username, p.name, l.sha256, l.file_name, l.stored_as,
           l.positions, l.replaced, l.loaded_by, l.loaded_at,
           (p.updated_at = l.portfolio_updated_at) AS current, l.effective_session
    FROM sigmasight.portfolio_loads l
    JOIN sigmasight.portfolios p ON p.id = l.portfolio_id
    JOIN sigmasight.users u ON u.id = p.owner_id
"""


def _records(conn: psycopg.Connection, where: str, params: Sequence) -> list[LoadRecord]:
    rows = conn.execute(f"{_LOAD_SELECT} WHERE {where} ORDER BY l.id", params).fetchall()
    return [LoadRecord(*row) for row in rows]


def _current_load(conn: psycopg.Connection, username: str, portfolio: str) -> LoadRecord | None:
    """The load the portfolio's positions come from, if they came from an intake load."""
    records = _records(
        conn,
        "u.username = %s AND p.name = %s AND p.updated_at = l.portfolio_updated_at",
        (username, portfolio),
    )
    return records[-1] if records else None


def loads_after(url: str, after_id: int | None = None) -> list[LoadRecord]:
    """Load records with id > `after_id` (all when None), oldest first."""
    with connect(url) as conn:
        return _records(conn, "l.id > %s", (-1 if after_id is None else after_id,))


def latest_load_id(url: str) -> int:
    """The highest load id so far (0 when none): a cursor that skips every existing load."""
    with connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM sigmasight.portfolio_loads")
        return int(row.fetchone()[0])


@dataclass(frozen=True)
class LoadOptions:
    """How files are loaded: `as_of` dates the changes (default: the latest closed session),
    `allow_close_all` lets a file close every held position, `provider` prices closes not
    stored (default: the configured market data provider)."""

    as_of: date | None = None
    allow_close_all: bool = False
    provider: MarketDataProvider | None = None


def _load(
    conn: psycopg.Connection,
    username: str,
    portfolio: str,
    parsed: ParsedPortfolio,
    sha256: str,
    file_name: str,
    loaded_by: str,
    options: LoadOptions,
) -> tuple[LoadRecord, int, HoldingsChanges | None]:
    """Load unless already current with this sha256, in one transaction: (record, new tags,
    the changes; None when it was already loaded)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (INTAKE_LOCK,))
        current = _current_load(conn, username, portfolio)
        if current is not None and current.sha256 == sha256:
            return current, 0, None
        result = load_portfolio(
            conn,
            username,
            portfolio,
            parsed,
            source_file=file_name,
            as_of=options.as_of,
            allow_close_all=options.allow_close_all,
            source=LoadSource(sha256, file_name, stamped(file_name), loaded_by),
            provider=options.provider,
        )
        (record,) = _records(conn, "l.id = %s", (result.load_id,))
    return record, result.tags_created, result.changes


# ---------------------------------------------------------------------------------------------
# One file


def _read(path: Path) -> tuple[bytes | None, str]:
    """(content, sha256); content None when the file is over the size limit (hashed streaming,
    never read whole). FileNotFoundError if gone; ValueError if it changed while read."""
    before = path.stat()
    if before.st_size > MAX_FILE_BYTES:
        with path.open("rb") as handle:
            return None, hashlib.file_digest(handle, "sha256").hexdigest()
    data = path.read_bytes()
    after = path.stat()
    unchanged = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    if not unchanged or len(data) != after.st_size:
        raise ValueError("the file changed while it was read (still being written?)")
    return data, fingerprint(data)


def _database_reason(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
        message = (exc.diag.message_primary or str(exc)).strip()
        return f"the database refused the load ({type(exc).__name__}{state}): {message}"
    return f"the load failed ({type(exc).__name__}): {exc}"


def process_file(
    url: str,
    path: Path | str,
    folders: Folders,
    *,
    loaded_by: str,
    today: date | None = None,
    options: LoadOptions | None = None,
) -> FileOutcome:
    """Validate, load and move one file (see the module docstring); never raises for a bad
    file, a refused change or a database failure, which become REJECTED or SKIPPED outcomes."""
    options = options or LoadOptions()
    began = time.perf_counter()
    path = Path(path)
    name = original_name(path.name)

    def outcome(status: Status, **kwargs) -> FileOutcome:
        return FileOutcome(path, status, seconds=time.perf_counter() - began, **kwargs)

    try:
        data, sha = _read(path)
    except FileNotFoundError:
        return outcome(Status.SKIPPED, reason="no such file (moved by another intake?)")
    except ValueError as exc:
        return outcome(Status.SKIPPED, reason=f"{exc}; left for the next tick")
    except OSError as exc:
        return outcome(Status.SKIPPED, reason=f"cannot read it: {exc}")

    errors: list[RowError] = []
    username = portfolio = None
    try:
        username, portfolio = portfolio_file_owner(name)
    except ValueError as exc:
        errors.append(RowError(None, "file_name", name, str(exc)))
    parsed: ParsedPortfolio | None = None
    try:
        empty_ok = options.allow_close_all
        if data is None:  # raises: over the size limit
            parsed = read_portfolio_csv(path, today=today, allow_empty=empty_ok)
        else:
            parsed = validate_portfolio_text(data, path=path, today=today, allow_empty=empty_ok)
    except PortfolioCSVError as exc:
        errors.extend(exc.errors)
    ids = {"sha256": sha, "username": username, "portfolio": portfolio}

    record, tags, changes = None, 0, None
    try:
        with connect(url) as conn:
            if username is not None and get_user_id(conn, username) is None:
                errors.insert(0, _unknown_user(username))
            if not errors:
                assert parsed is not None and username is not None and portfolio is not None
                record, tags, changes = _load(
                    conn, username, portfolio, parsed, sha, name, loaded_by, options
                )
    except UnknownUserError:  # the user was deleted since the check above
        errors = [_unknown_user(str(username))]
    except HoldingsError as exc:  # a change refused (close-all, back-dating, no close...)
        errors.extend(exc.errors)
    except SessionError as exc:
        errors.append(RowError(None, "as_of", str(options.as_of), str(exc)))
    except psycopg.OperationalError as exc:  # connection lost, deadlock, timeout: transient
        reason = f"{_database_reason(exc)}; left in the inbox, retried next tick"
        return outcome(Status.SKIPPED, reason=reason, **ids)
    except Exception as exc:  # refused by the database (constraint, trigger...) or a bug
        errors.append(
            RowError(None, "database", None, _database_reason(exc) + "; nothing was loaded")
        )
    if errors or record is None:
        return _reject(path, folders, errors, outcome, ids)

    # The recorded name: on the first move, and on the move a crash interrupted. Taken: the
    # same content was dropped again, so it gets a name of its own.
    destination = folders.processed / record.stored_as
    if destination.exists():
        destination = free_path(folders.processed, stamped(name))
    moved = move(path, destination)
    status = Status.UNCHANGED if changes is None else Status.LOADED
    return outcome(status, load=record, changes=changes, tags_created=tags, moved_to=moved, **ids)


def _unknown_user(username: str) -> RowError:
    reason = f"unknown user {username!r}: create it first (`sigmasight user add {username}`)"
    return RowError(None, "username", username, reason)


def _reject(
    path: Path,
    folders: Folders,
    errors: list[RowError],
    outcome: Callable[..., FileOutcome],
    ids: dict,
) -> FileOutcome:
    """Report first, then move: a file in rejected/ always has its `.errors.json`."""
    destination = free_path(folders.rejected, stamped(original_name(path.name)))
    report = Path(f"{destination}{ERRORS_SUFFIX}")
    content = error_report(path, errors) | ids | {"moved_to": str(destination)}
    write_json(report, content)
    moved = move(path, destination)
    return outcome(Status.REJECTED, errors=tuple(errors), moved_to=moved, report=report, **ids)


# ---------------------------------------------------------------------------------------------
# A tick


def process_files(
    url: str,
    paths: Iterable[Path],
    folders: Folders,
    *,
    loaded_by: str,
    time_budget: float | None = None,
    today: date | None = None,
    options: LoadOptions | None = None,
) -> list[FileOutcome]:
    """Process `paths` in order; once `time_budget` seconds are spent, the rest wait."""
    began = time.perf_counter()
    outcomes = []
    for path in paths:
        if time_budget is not None and time.perf_counter() - began > time_budget:
            break
        outcomes.append(
            process_file(url, path, folders, loaded_by=loaded_by, today=today, options=options)
        )
    if any(outcome.status is Status.LOADED for outcome in outcomes):
        analyze(url, LOADED_TABLES)
    return outcomes


def process_inbox(
    url: str,
    folders: Folders | None = None,
    *,
    loaded_by: str,
    settle_seconds: float = SETTLE_SECONDS,
    time_budget: float | None = None,
    today: date | None = None,
    options: LoadOptions | None = None,
) -> list[FileOutcome]:
    """One tick: every ready file of the inbox (created if missing), oldest first."""
    folders = folders or Folders.around()
    folders.create()
    paths = ready_files(folders.inbox, settle_seconds)
    return process_files(
        url,
        paths,
        folders,
        loaded_by=loaded_by,
        time_budget=time_budget,
        today=today,
        options=options,
    )


# ---------------------------------------------------------------------------------------------
# The CLI


@dataclass
class _Selection:
    files: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)


def _select(paths: Sequence[str], folders: Folders, say: Say) -> _Selection:
    """The files to process: the inbox's (waiting for files still being written), or the
    paths given (a folder stands for its `*.csv` files)."""
    selection = _Selection()
    if not paths:
        folders.create()
        deadline = time.time() + CLI_SETTLE_WAIT_SECONDS
        while True:
            candidates = [p for p in folders.inbox.iterdir() if is_candidate(p) and p.is_file()]
            ready = ready_files(folders.inbox)
            if len(ready) == len(candidates) or time.time() >= deadline:
                break
            time.sleep(0.2)
        waiting = sorted(set(candidates) - set(ready))
        for path in waiting:
            say(f"skipped   {path.name}: still being written; left in the inbox")
        selection.files = ready
        selection.missing = waiting
        return selection
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            selection.files.extend(ready_files(path, settle_seconds=0))
        elif path.is_file():
            selection.files.append(path)
        else:
            say(f"skipped   {path.name}: no such file ({path})")
            selection.missing.append(path)
    return selection


def ingest_command(
    url: str,
    paths: Sequence[str],
    say: Say,
    as_of: str | None = None,
    allow_close_all: bool = False,
) -> int:
    """`sigmasight ingest [PATH...] [--as-of YYYY-MM-DD] [--allow-close-all]`: one tick over the
    inbox, or over the files given (moved to the inbox's processed/ and rejected/ all the
    same). One line per file; exit status 1 if any file was rejected or could not be
    processed, 2 (nothing touched) for an --as-of that is not a closed session, else 0."""
    session = None
    if as_of is not None:
        try:
            session = effective_session(as_of)
        except SessionError as exc:
            say(f"{exc}; no file was touched")
            return 2
    options = LoadOptions(as_of=session, allow_close_all=allow_close_all)
    folders = Folders.around()
    selection = _select(paths, folders, say)
    if not selection.files and not selection.missing:
        say(f"no portfolio files in {folders.inbox}")
        return 0
    outcomes = process_files(url, selection.files, folders, loaded_by="cli", options=options)
    for result in outcomes:
        say(result.line())
    if any(result.status is Status.LOADED for result in outcomes):
        say(
            "backfill: the portfolio_inbox_sensor requests the 90-day run of loaded portfolios "
            "(`sigmasight dev` runs it); `sigmasight backfill` runs it now"
        )
    failed = selection.missing or any(
        result.status in (Status.REJECTED, Status.SKIPPED) for result in outcomes
    )
    return 1 if failed else 0
