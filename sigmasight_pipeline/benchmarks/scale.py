"""Benchmark (issue 10): a 90-day backfill on books of 100, 300 and 1,000 portfolios, and today's
design (REFERENCE_COMMIT, before the rewrite for scale) on 100 portfolios, side by side.

`make bench-scale` runs it and replaces its section of BENCHMARKS.md (it takes long). A quick
look on small books, printed and not written anywhere::

    python -m sigmasight_pipeline.benchmarks.scale --sizes 5,10 --days 5 --reference-size 5

Per book size, on a fresh database of the same PostgreSQL server (the embedded one, or
DATABASE_URL's), everything through the checkout's CLI, each command in its own process:

- `sigmasight user add` for the book's users (password on stdin), the book (`book.py`) written
  as CSV files and loaded with `sigmasight ingest`;
- `sigmasight backfill --days D --end END`: wall time and peak RSS of its process tree (the
  process and all its descendants, RSS summed, sampled every SAMPLE_SECONDS with psutil; the
  PostgreSQL server is not part of it);
- rows written: exact row counts of the sigmasight schema's tables, after minus before;
- bytes per position-day: pg_total_relation_size (heap, TOAST, indexes) of the sigmasight
  schema's tables after the backfill (partitions counted under their root), divided by
  positions x D; per table in a second table;
- on the largest book only, the daily run: `sigmasight backfill --days 1` for the session after
  END, once the backfill is done.

The reference is REFERENCE_COMMIT checked out in a temporary git worktree with its own .venv
(`uv sync --frozen`), measured the same way on the same book and server right after ours.

Every CLI runs with SIGMASIGHT_NO_DOTENV=1 (no checkout's .env is written), a temporary
DAGSTER_HOME linking that checkout's dagster.yaml, a temporary inbox and the synthetic market
data provider. Each checkout's code and packages are compiled to bytecode first, as a deployed
image would be, so no measured command spends its time compiling imports. A size that fails,
exceeds the timeout or goes over the RSS limit is reported as FAILED with the reason (its
process tree is killed) and the other sizes still run; the databases, temporary folders and the
worktree are removed in every case.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
from psycopg import sql

from sigmasight_pipeline.benchmarks.book import DEFAULT_SEED, Book, generate_book
from sigmasight_pipeline.calendar import is_session, sessions
from sigmasight_pipeline.resources.database import (
    PROJECT_ROOT,
    connect,
    create_database,
    database_url,
    drop_database,
)

END = "2026-11-20"
SIZES = (100, 300, 1_000)
DAYS = 90
REFERENCE_COMMIT = "e5233ee"
REFERENCE_SIZE = 100
SAMPLE_SECONDS = 0.2
TIMEOUT_SECONDS = 3_600  # per command
RSS_LIMIT_SHARE = 0.6  # default RSS limit: this share of the machine's memory
PASSWORD = "scale-bench"
MB = 1_000_000
LOG_TAIL_LINES = 25
# Not passed to the CLIs: bytecode is cached as usual, and nothing of this process's own
# environment (venv, Python path, Dagster instance, inbox) leaks into the checkout measured.
DROPPED_ENV = (
    "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "VIRTUAL_ENV", "DAGSTER_HOME",
    "SIGMASIGHT_DAGSTER_PG_URL", "SIGMASIGHT_INBOX",
)  # fmt: skip
TABLE_SIZES = """
    WITH leaves AS (
        SELECT coalesce(pg_partition_root(c.oid), c.oid) AS root,
               pg_total_relation_size(c.oid) AS bytes
        FROM pg_class c
        WHERE c.relkind IN ('r', 'm')
    )
    SELECT r.relname, sum(l.bytes)::bigint
    FROM leaves l
    JOIN pg_class r ON r.oid = l.root
    JOIN pg_namespace n ON n.oid = r.relnamespace
    WHERE n.nspname = 'sigmasight'
    GROUP BY r.relname
    ORDER BY r.relname
"""

TELLING = re.compile(r"error|rejected|failed|killed|exception", re.IGNORECASE)

Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"   {message}", flush=True)


class BenchmarkFailure(RuntimeError):
    """A command failed, timed out or went over the RSS limit; the message says which and ends
    with the tail of its output."""


# --- one command, measured ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessCost:
    """Wall time and memory of one command. `peak_tree_rss`: the largest sum of RSS over the
    process and its descendants at one sample; `peak_process_rss`: the largest single process."""

    seconds: float
    peak_tree_rss: int
    peak_process_rss: int
    samples: int


def _tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(sum, max) of the RSS of `process` and its descendants now; gone processes count 0."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = largest = 0
    for member in members:
        try:
            rss = member.memory_info().rss
        except psutil.NoSuchProcess:  # exited (or a zombie) since the listing
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def _kill_tree(process: psutil.Process) -> None:
    try:
        members = [*process.children(recursive=True), process]
    except psutil.NoSuchProcess:
        return
    for member in members:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(members, timeout=10)


def _tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"


def run_sampled(
    command: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout: float = TIMEOUT_SECONDS,
    rss_limit: int | None = None,
    stdin_text: str | None = None,
    interval: float = SAMPLE_SECONDS,
) -> ProcessCost:
    """Run `command` (output to `log`), sampling its process tree's RSS every `interval` s.

    BenchmarkFailure when it exits non-zero, runs past `timeout` seconds or its tree goes over
    `rss_limit` bytes (the tree is killed in the last two cases, and on any interruption)."""
    began = time.perf_counter()
    peak_tree = peak_process = samples = 0
    with open(log, "wb") as output:
        process = psutil.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        stopped = None
        try:
            if stdin_text is not None:
                process.stdin.write(stdin_text.encode())
                process.stdin.close()
            while True:
                tree, largest = _tree_rss(process)
                samples += 1
                peak_tree, peak_process = max(peak_tree, tree), max(peak_process, largest)
                elapsed = time.perf_counter() - began
                if rss_limit is not None and tree > rss_limit:
                    stopped = f"killed after {elapsed:.0f} s: its process tree reached "
                    stopped += f"{tree / MB:,.0f} MB of RSS (limit {rss_limit / MB:,.0f} MB)"
                    break
                if elapsed > timeout:
                    stopped = f"killed: still running after the {timeout:,.0f} s timeout"
                    break
                try:
                    returncode = process.wait(timeout=interval)
                    break
                except psutil.TimeoutExpired:
                    continue
        finally:
            if process.poll() is None:
                _kill_tree(process)
    seconds = time.perf_counter() - began
    name = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
    if stopped:
        raise BenchmarkFailure(f"`{name}` {stopped}:\n{_tail(log)}")
    if returncode != 0:
        raise BenchmarkFailure(f"`{name}` exited with {returncode}:\n{_tail(log)}")
    return ProcessCost(seconds, peak_tree, peak_process, samples)


# --- the database --------------------------------------------------------------------------


def schema_tables(url: str) -> dict[str, tuple[int, int]]:
    """Per table of the sigmasight schema: (exact row count, bytes of heap, TOAST and
    indexes, partitions included)."""
    with connect(url, autocommit=True) as conn:
        sizes = conn.execute(TABLE_SIZES).fetchall()
        out = {}
        for name, size in sizes:
            query = sql.SQL("SELECT count(*) FROM sigmasight.{}").format(sql.Identifier(name))
            out[name] = (int(conn.execute(query).fetchone()[0]), int(size))
    return out


def _rows_written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(rows for rows, _ in after.values()) - sum(rows for rows, _ in before.values())


# --- a checkout and its CLI ----------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """A checkout of the pipeline whose CLI is measured: its root and its venv's python."""

    label: str
    root: Path
    python: Path


# Compiles the checkout's package and its venv's packages, as a deployed image would be built.
COMPILE_BYTECODE = (
    "import compileall, sys, sysconfig\n"
    "paths = {sysconfig.get_paths()[k] for k in ('purelib', 'platlib')} | {sys.argv[1]}\n"
    "for path in sorted(paths):\n"
    "    compileall.compile_dir(path, quiet=2, workers=0)\n"
)


def compile_bytecode(checkout: Checkout, say: Say = _say) -> None:
    """Write the bytecode of everything the checkout's CLI may import, once, so that no measured
    command spends its time compiling (files that do not compile are skipped)."""
    say(f"{checkout.label}: compiling bytecode (once; later runs find it up to date)")
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    package = checkout.root / "sigmasight_pipeline"
    command = [str(checkout.python), "-c", COMPILE_BYTECODE, str(package)]
    subprocess.run(command, env=env, capture_output=True, check=False)


def _uv() -> str:
    """uv: $UV (the Makefile passes its own), else on PATH, else ~/.local/bin/uv."""
    return os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local/bin/uv")


@contextmanager
def reference_checkout(commit: str, folder: Path, say: Say = _say) -> Iterator[Checkout]:
    """`commit` in a temporary git worktree under `folder` with its own .venv; the worktree
    is removed (and unregistered) on the way out."""
    path = folder / f"reference-{commit}"
    git = ["git", "-C", str(PROJECT_ROOT), "worktree"]
    say(f"git worktree add --detach {path} {commit}")
    done = subprocess.run(
        [*git, "add", "--detach", str(path), commit], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchmarkFailure(f"git worktree add {commit} failed: {done.stderr.strip()}")
    try:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
        }
        say(f"uv sync --frozen in {path}")
        done = subprocess.run(
            [_uv(), "sync", "--frozen", "--quiet"],
            cwd=path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchmarkFailure(
                f"uv sync in the {commit} worktree failed: {done.stderr[-2000:]}"
            )
        checkout = Checkout(f"today's design ({commit})", path, path / ".venv" / "bin" / "python")
        compile_bytecode(checkout, say)
        yield checkout
    finally:
        removed = subprocess.run(
            [*git, "remove", "--force", str(path)], capture_output=True, text=True, check=False
        )
        if removed.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            subprocess.run([*git, "prune"], capture_output=True, check=False)


@dataclass
class _Cli:
    """The checkout's `sigmasight` CLI on one database, each command in its own process."""

    checkout: Checkout
    env: dict[str, str]
    folder: Path
    timeout: float
    rss_limit: int | None

    def run(self, step: str, *args: str, stdin_text: str | None = None) -> ProcessCost:
        return run_sampled(
            [str(self.checkout.python), "-m", "sigmasight_pipeline.cli", *args],
            env=self.env,
            cwd=self.folder,  # outside any checkout: the dagster CLI would load its .env
            log=self.folder / f"{step}.log",
            timeout=self.timeout,
            rss_limit=self.rss_limit,
            stdin_text=stdin_text,
        )


def _cli_env(url: str, dagster_home: Path, inbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(
        DATABASE_URL=url,
        DAGSTER_HOME=str(dagster_home),
        SIGMASIGHT_NO_DOTENV="1",
        SIGMASIGHT_INBOX=str(inbox),
        SIGMASIGHT_MARKET_DATA="synthetic",
        SIGMASIGHT_DAGSTER_PG_URL="postgresql+psycopg2://" + url.split("://", 1)[1],
    )
    return env


# --- one book on one checkout --------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One checkout's backfill of one book (and, when measured, the daily run after it)."""

    checkout: str
    portfolios: int
    positions: int
    days: int
    end: str
    setup_seconds: float
    backfill: ProcessCost
    rows_written: int
    tables: dict[str, tuple[int, int]]  # after the backfill: (rows, bytes)
    daily: ProcessCost | None = None
    daily_rows_written: int | None = None
    daily_end: str | None = None

    @property
    def position_days(self) -> int:
        return self.positions * self.days

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.tables.values())

    @property
    def bytes_per_position_day(self) -> float:
        return self.total_bytes / self.position_days


def measure_book(
    checkout: Checkout,
    book: Book,
    *,
    server: str,
    end: str,
    days: int,
    folder: Path,
    daily_end: str | None = None,
    timeout: float = TIMEOUT_SECONDS,
    rss_limit: int | None = None,
    say: Say = _say,
) -> Measurement:
    """Load `book` into a fresh database on `server` with `checkout`'s CLI, then measure the
    `days`-session backfill ending at `end` (and the daily run for `daily_end` if given).
    The database and the work folder are removed on the way out."""
    n = len(book.portfolios)
    name = f"sigmasight_scale_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=folder))
    url = create_database(server, name)
    try:
        dagster_home, inbox = work / "dagster", work / "inbox"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").symlink_to(checkout.root / "dagster.yaml")
        cli = _Cli(checkout, _cli_env(url, dagster_home, inbox), work, timeout, rss_limit)

        began = time.perf_counter()
        say(f"{checkout.label}, {n:,} portfolios: {len(book.users)} users, ingest ({name})")
        for user in book.users:
            cli.run(f"user-{user}", "user", "add", user, stdin_text=PASSWORD + "\n")
        book.write(inbox)
        cli.run("ingest", "ingest", str(inbox))
        before = schema_tables(url)
        loaded = before.get("positions", (0, 0))[0]
        if loaded != book.positions:
            raise BenchmarkFailure(
                f"ingest loaded {loaded:,} positions, expected {book.positions:,}"
            )
        setup_seconds = time.perf_counter() - began

        say(f"{checkout.label}, {n:,} portfolios: backfill --days {days} --end {end}")
        backfill = cli.run("backfill", "backfill", "--days", str(days), "--end", end)
        after = schema_tables(url)
        say(
            f"{checkout.label}, {n:,} portfolios: {backfill.seconds:.1f} s, peak RSS "
            f"{backfill.peak_tree_rss / MB:,.0f} MB"
        )
        daily = daily_rows = None
        if daily_end:
            say(f"{checkout.label}, {n:,} portfolios: daily run, --days 1 --end {daily_end}")
            daily = cli.run("daily", "backfill", "--days", "1", "--end", daily_end)
            daily_rows = _rows_written(after, schema_tables(url))
        return Measurement(
            checkout=checkout.label,
            portfolios=n,
            positions=book.positions,
            days=days,
            end=end,
            setup_seconds=setup_seconds,
            backfill=backfill,
            rows_written=_rows_written(before, after),
            tables=after,
            daily=daily,
            daily_rows_written=daily_rows,
            daily_end=daily_end,
        )
    finally:
        drop_database(server, name)
        shutil.rmtree(work, ignore_errors=True)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A measurement, or why there is none."""

    checkout: str
    portfolios: int
    positions: int
    measurement: Measurement | None = None
    error: str | None = None


def _label(outcome: Outcome) -> str:
    return f"{outcome.checkout}, {outcome.portfolios:,} portfolios"


def _reason(error: str) -> str:
    """One line for a failure: its first line and the last line of the output that tells what
    went wrong (an error, a rejection, a kill), else its last line."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else "unknown error"
    telling = [line for line in lines[1:] if TELLING.search(line)]
    return f"{lines[0]} ... {(telling or lines)[-1]}"


def _main_row(outcome: Outcome) -> dict:
    row = {
        "benchmark": _label(outcome),
        "portfolios": f"{outcome.portfolios:,}",
        "positions": f"{outcome.positions:,}",
    }
    m = outcome.measurement
    if m is None:
        return row | {"wall_s": "FAILED", "notes": f"FAILED: {_reason(outcome.error or '')}"}
    notes = [
        f"`backfill --days {m.days} --end {m.end}`",
        f"peak RSS of the largest single process {m.backfill.peak_process_rss / MB:,.0f} MB",
        f"sigmasight schema {m.total_bytes / MB:,.1f} MB after the backfill",
        f"setup (users, ingest) {m.setup_seconds:.0f} s",
    ]
    if m.daily is not None:
        notes.append(
            f"daily run (`backfill --days 1 --end {m.daily_end}` after the backfill): "
            f"{m.daily.seconds:.1f} s wall, peak RSS {m.daily.peak_tree_rss / MB:,.0f} MB, "
            f"{m.daily_rows_written:,} rows written"
        )
    return row | {
        "wall_s": m.backfill.seconds,
        "peak_rss_mb": m.backfill.peak_tree_rss / MB,
        "rows_written": f"{m.rows_written:,}",
        "bytes_per_position_day": m.bytes_per_position_day,
        "notes": "; ".join(notes),
    }


def _ratio_row(reference: Outcome, ours: Outcome) -> dict:
    r, o = reference.measurement, ours.measurement
    row = {"benchmark": f"ratio {reference.checkout} / ours, {ours.portfolios:,} portfolios"}
    if r is None or o is None:
        return row | {"wall_s": "n/a", "notes": "one side failed: no ratio"}
    return row | {
        "portfolios": f"{ours.portfolios:,}",
        "positions": f"{ours.positions:,}",
        "wall_s": f"{r.backfill.seconds / o.backfill.seconds:.2f}x",
        "peak_rss_mb": f"{r.backfill.peak_tree_rss / o.backfill.peak_tree_rss:.2f}x",
        "rows_written": f"{r.rows_written / o.rows_written:.2f}x" if o.rows_written else "n/a",
        "bytes_per_position_day": f"{r.bytes_per_position_day / o.bytes_per_position_day:.2f}x",
    }


def _per_table_rows(outcomes: list[Outcome]) -> list[dict]:
    """Bytes per position-day by table: one row per table, one column per measurement."""
    measured = [o for o in outcomes if o.measurement is not None]
    measured.sort(key=lambda o: o.checkout != "ours")  # ours first, as in the main table
    if not measured:
        return []
    title = "bytes per position-day by table (after the backfill; heap, TOAST and indexes)"
    names = sorted(
        {t for o in measured for t in o.measurement.tables},
        key=lambda t: -max(o.measurement.tables.get(t, (0, 0))[1] for o in measured),
    )
    rows = []
    for table in [*names, "total"]:
        row: dict = {"table": title, "db_table": table}
        for o in measured:
            m = o.measurement
            size = m.total_bytes if table == "total" else m.tables.get(table, (0, 0))[1]
            row[_label(o)] = size / m.position_days if table == "total" or table in m.tables else ""
        rows.append(row)
    return rows


def report(outcomes: list[Outcome]) -> list[dict]:
    """Rows for BENCHMARKS.md: the main table (ours by size, the reference, their ratio) and the
    per-table sizes."""
    ours = [o for o in outcomes if o.checkout == "ours"]
    others = [o for o in outcomes if o.checkout != "ours"]
    rows = [_main_row(o) for o in ours]
    for reference in others:
        rows.append(_main_row(reference))
        paired = [o for o in ours if o.portfolios == reference.portfolios]
        if paired:
            rows.append(_ratio_row(reference, paired[0]))
    return rows + _per_table_rows(outcomes)


# --- the whole run -----------------------------------------------------------------------------


def _next_session(day: str) -> str:
    after = sessions(
        pd.Timestamp(day) + pd.Timedelta(days=1), pd.Timestamp(day) + pd.Timedelta(days=10)
    )
    return after[0].date().isoformat()


def _attempt(checkout: str, book: Book, measure: Callable[[], Measurement], say: Say) -> Outcome:
    n = len(book.portfolios)
    try:
        return Outcome(checkout, n, book.positions, measurement=measure())
    except Exception as exc:  # a failed size is reported, the others still run
        message = (
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchmarkFailure) else str(exc)
        )
        say(f"{checkout}, {n:,} portfolios FAILED: {message}")
        return Outcome(checkout, n, book.positions, error=message)


def run(
    sizes: Sequence[int] = SIZES,
    days: int = DAYS,
    end: str = END,
    reference_commit: str | None = REFERENCE_COMMIT,
    reference_size: int = REFERENCE_SIZE,
    seed: int = DEFAULT_SEED,
    timeout: float = TIMEOUT_SECONDS,
    rss_limit: int | None = None,
    say: Say = _say,
) -> list[dict]:
    """Measure ours on every size in `sizes` and, right after ours on `reference_size`,
    `reference_commit` on that size (None: no reference); rows for BENCHMARKS.md."""
    if not is_session(end):
        raise ValueError(f"--end {end} is not an NYSE trading day")
    if rss_limit is None:
        rss_limit = int(RSS_LIMIT_SHARE * psutil.virtual_memory().total)
    server = database_url()
    daily_end = _next_session(end)
    largest = max(sizes)
    books: dict[int, Book] = {}
    outcomes: list[Outcome] = []
    ours = Checkout("ours", PROJECT_ROOT, Path(sys.executable))

    def book_of(n: int) -> Book:
        if n not in books:
            books[n] = generate_book(n, end, days, seed=seed)
        return books[n]

    compile_bytecode(ours, say)
    with tempfile.TemporaryDirectory(prefix="sigmasight_scale_") as tmp:
        folder = Path(tmp)

        def measure(checkout: Checkout, n: int, daily: bool) -> Measurement:
            return measure_book(
                checkout, book_of(n), server=server, end=end, days=days, folder=folder,
                daily_end=daily_end if daily else None, timeout=timeout, rss_limit=rss_limit,
                say=say,
            )  # fmt: skip

        def reference() -> None:
            label = f"today's design ({reference_commit})"
            book = book_of(reference_size)
            try:
                with reference_checkout(reference_commit, folder, say) as checkout:
                    outcomes.append(
                        _attempt(label, book, lambda: measure(checkout, reference_size, False), say)
                    )
            except Exception as exc:  # the worktree or its venv could not be made
                say(f"{label} FAILED: {exc}")
                outcomes.append(Outcome(label, reference_size, book.positions, error=str(exc)))

        for n in sorted(sizes):
            outcomes.append(
                _attempt("ours", book_of(n), lambda n=n: measure(ours, n, n == largest), say)
            )
            if reference_commit and n == reference_size:
                reference()
        if reference_commit and reference_size not in sizes:
            reference()
    return report(outcomes)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes such as 100,300,1000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive sizes")
    return sizes


def main(argv: list[str] | None = None) -> int:
    from sigmasight_pipeline.benchmarks.__main__ import tables

    parser = argparse.ArgumentParser(
        prog="python -m sigmasight_pipeline.benchmarks.scale",
        description="Measure the backfill on books of N portfolios; print the tables "
        "(BENCHMARKS.md is updated by `make bench-scale` only).",
    )
    parser.add_argument("--sizes", type=_sizes, default=list(SIZES), help="e.g. 5,10")
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--end", default=END, help="last session of the window")
    parser.add_argument("--reference-commit", default=REFERENCE_COMMIT)
    parser.add_argument("--reference-size", type=int, default=REFERENCE_SIZE)
    parser.add_argument("--no-reference", action="store_true", help="ours only")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="s per command")
    parser.add_argument(
        "--rss-limit-gb",
        type=float,
        help="kill a command whose process tree goes over this; default "
        f"{RSS_LIMIT_SHARE * 100:.0f} percent of the machine's memory",
    )
    args = parser.parse_args(argv)
    rows = run(
        sizes=args.sizes,
        days=args.days,
        end=args.end,
        reference_commit=None if args.no_reference else args.reference_commit,
        reference_size=args.reference_size,
        seed=args.seed,
        timeout=args.timeout,
        rss_limit=int(args.rss_limit_gb * 1e9) if args.rss_limit_gb else None,
    )
    print("\n".join(tables(rows)))
    return 1 if any(row.get("wall_s") == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
