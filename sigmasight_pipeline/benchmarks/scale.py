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
  process and all its descendants, RSS summed, sampled every SAMPLE_SECONDS with psutil, see
  `processes.py`; the PostgreSQL server is not part of it);
- rows written: exact row counts of the sigmasight schema's tables, after minus before;
- bytes per position-day: pg_total_relation_size (heap, TOAST, indexes) of the sigmasight
  schema's tables after the backfill (partitions counted under their root), divided by
  positions x D; per table in a second table;
- on the largest book only, the daily run: `sigmasight backfill --days 1` for the session after
  END, once the backfill is done;
- on the SHARDS_SIZE book (1,000 portfolios, else the largest), right after ours: the same
  backfill with `--shards 2` on a fresh database with the same book (`--no-shards`: not
  measured), reported as `2 shards vs 1`, the
  1-shard wall time over the 2-shard one. Both shards share this machine's cores: the ratio
  shows sharding's overhead and overlap here, not a cluster's speed-up;
- each backfill's stage wall times (and, for one-run stages, step times) as its CLI printed
  them, in the notes; the steps of ours on the largest book in a table of their own.

The reference is REFERENCE_COMMIT checked out in a temporary git worktree with its own .venv
(`uv sync --frozen`), measured the same way on the same book and server right after ours.

Every CLI runs with SIGMASIGHT_NO_DOTENV=1 (no checkout's .env is written), a temporary
DAGSTER_HOME linking that checkout's dagster.yaml, a temporary inbox and the synthetic market
data provider. Each checkout's code and packages are compiled to bytecode first, as a deployed
image would be, so no measured command spends its time compiling imports. A size that fails,
exceeds the timeout or goes over the RSS limit is reported as FAILED with the reason (its
process tree is killed) and the other sizes still run; the databases, temporary folders and the
worktree are removed in every case. The rows for BENCHMARKS.md are made by `scale_report.py`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import psutil
from psycopg import sql

from sigmasight_pipeline.benchmarks.book import DEFAULT_SEED, Book, generate_book
from sigmasight_pipeline.benchmarks.processes import (
    DROPPED_ENV,
    MB,
    TIMEOUT_SECONDS,
    BenchmarkFailure,
    Checkout,
    ProcessCost,
    Say,
    compile_bytecode,
    print_progress,
    reference_checkout,
    run_sampled,
)
from sigmasight_pipeline.benchmarks.scale_report import (
    Measurement,
    Outcome,
    report,
    stage_times,
    stages_note,
)
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
SIZES_ENV = "SIGMASIGHT_SCALE_SIZES"  # e.g. "100,300": the books `make bench-scale` measures
DAYS = 90
REFERENCE_COMMIT = "e5233ee"
REFERENCE_SIZE = 100
SHARDS = 2  # the shard count measured against 1
# The book the shards are measured on (the largest measured when it is not among them).
SHARDS_SIZE = 1_000
RSS_LIMIT_SHARE = 0.6  # default RSS limit: this share of the machine's memory
PASSWORD = "scale-bench"
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


def rows_written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(rows for rows, _ in after.values()) - sum(rows for rows, _ in before.values())


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


def measure_book(
    checkout: Checkout,
    book: Book,
    *,
    server: str,
    end: str,
    days: int,
    folder: Path,
    daily_end: str | None = None,
    shards: int = 1,
    timeout: float = TIMEOUT_SECONDS,
    rss_limit: int | None = None,
    say: Say = print_progress,
) -> Measurement:
    """Load `book` into a fresh database on `server` with `checkout`'s CLI, then measure the
    `days`-session backfill ending at `end` in `shards` shards (`--shards` passed when above 1),
    and the daily run for `daily_end` if given. The database and the work folder are removed
    on the way out."""
    n = len(book.portfolios)
    label = f"{checkout.label}, {n:,} portfolios" + (f", {shards} shards" if shards > 1 else "")
    name = f"sigmasight_scale_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=folder))
    url = create_database(server, name)
    try:
        dagster_home, inbox = work / "dagster", work / "inbox"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").symlink_to(checkout.root / "dagster.yaml")
        cli = _Cli(checkout, _cli_env(url, dagster_home, inbox), work, timeout, rss_limit)

        began = time.perf_counter()
        say(f"{label}: {len(book.users)} users, ingest ({name})")
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

        command = ["backfill", "--days", str(days), "--end", end]
        command += ["--shards", str(shards)] if shards > 1 else []
        say(f"{label}: {' '.join(command)}")
        backfill = cli.run("backfill", *command)
        after = schema_tables(url)
        stages = stage_times((work / "backfill.log").read_text(errors="replace"))
        say(f"{label}: {backfill.seconds:.1f} s, peak RSS {backfill.peak_tree_rss / MB:,.0f} MB")
        if stages:
            say(f"{label}: {stages_note(stages)}")
        daily = daily_rows = None
        if daily_end:
            say(f"{label}: daily run, --days 1 --end {daily_end}")
            daily = cli.run("daily", "backfill", "--days", "1", "--end", daily_end)
            daily_rows = rows_written(after, schema_tables(url))
        return Measurement(
            checkout=checkout.label,
            portfolios=n,
            positions=book.positions,
            days=days,
            end=end,
            setup_seconds=setup_seconds,
            backfill=backfill,
            rows_written=rows_written(before, after),
            tables=after,
            daily=daily,
            daily_rows_written=daily_rows,
            daily_end=daily_end,
            shards=shards,
            stages=stages,
        )
    finally:
        drop_database(server, name)
        shutil.rmtree(work, ignore_errors=True)


# --- the whole run -----------------------------------------------------------------------------


def _next_session(day: str) -> str:
    after = sessions(
        pd.Timestamp(day) + pd.Timedelta(days=1), pd.Timestamp(day) + pd.Timedelta(days=10)
    )
    return after[0].date().isoformat()


def _attempt(
    checkout: str, book: Book, measure: Callable[[], Measurement], say: Say, shards: int = 1
) -> Outcome:
    n = len(book.portfolios)
    try:
        return Outcome(checkout, n, book.positions, measurement=measure(), shards=shards)
    except Exception as exc:  # a failed size is reported, the others still run
        message = (
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, BenchmarkFailure) else str(exc)
        )
        say(f"{checkout}, {n:,} portfolios, {shards} shard(s) FAILED: {message}")
        return Outcome(checkout, n, book.positions, error=message, shards=shards)


def run(
    sizes: Sequence[int] | None = None,
    days: int = DAYS,
    end: str = END,
    reference_commit: str | None = REFERENCE_COMMIT,
    reference_size: int = REFERENCE_SIZE,
    seed: int = DEFAULT_SEED,
    timeout: float = TIMEOUT_SECONDS,
    rss_limit: int | None = None,
    shards: int = SHARDS,
    shards_size: int = SHARDS_SIZE,
    say: Say = print_progress,
) -> list[dict]:
    """Measure ours on every size in `sizes`; right after ours on `shards_size` (the largest
    when it is not in `sizes`), ours with `shards` shards on it (1: not measured); right after
    ours on `reference_size`, `reference_commit` on that size (None: no reference). Rows for
    BENCHMARKS.md."""
    if shards < 1:
        raise ValueError(f"shards={shards}: expected at least 1")
    if not is_session(end):
        raise ValueError(f"--end {end} is not an NYSE trading day")
    if rss_limit is None:
        rss_limit = int(RSS_LIMIT_SHARE * psutil.virtual_memory().total)
    server = database_url()
    daily_end = _next_session(end)
    if sizes is None:  # `make bench-scale SIZES=100,300` measures only those books
        sizes = _sizes(os.environ.get(SIZES_ENV, "")) if os.environ.get(SIZES_ENV) else SIZES
    largest = max(sizes)
    if shards_size not in sizes:
        shards_size = largest
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

        def measure(checkout: Checkout, n: int, daily: bool, shards: int = 1) -> Measurement:
            return measure_book(
                checkout, book_of(n), server=server, end=end, days=days, folder=folder,
                daily_end=daily_end if daily else None, shards=shards, timeout=timeout,
                rss_limit=rss_limit, say=say,
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
            if shards > 1 and n == shards_size:
                sharded = partial(measure, ours, n, False, shards)
                outcomes.append(_attempt("ours", book_of(n), sharded, say, shards))
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
    parser.add_argument(
        "--no-shards",
        action="store_true",
        help=f"do not measure the {SHARDS_SIZE}-portfolio book with --shards {SHARDS} against 1",
    )
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
        shards=1 if args.no_shards else SHARDS,
    )
    print("\n".join(tables(rows)))
    return 1 if any(row.get("wall_s") == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
