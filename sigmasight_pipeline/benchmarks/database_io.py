"""Benchmark: bulk table writes and reads through ADBC (Arrow) against psycopg, side by side.

Run with ``uv run python -m sigmasight_pipeline.benchmarks database_io``. Issue 10 asks which
of binary COPY and Arrow through the ADBC PostgreSQL driver streams our tables best; this
measures both, plus the design they replaced, on ROWS rows of a position_values-like table (a
date, two integer ids, 8 float columns, a short text column; no NULLs, no index) in a throwaway
database on the project's server (embedded or DATABASE_URL), dropped at the end.

- Writes, each one transaction (committed inside the timing) into the table truncated before:
  ours, `tables.ingest` (the DataFrame as an Arrow table, ADBC's binary COPY); psycopg binary
  COPY with `set_types` and `write_row` per row; and the old design, psycopg COPY of a CSV built
  by `DataFrame.to_csv`. Each write is checked by SQL aggregates against the frame.
- Reads of all rows into a DataFrame: ours, `tables.query_frame` (Arrow batches to pandas, what
  `TableReader.frame` runs); the old design, `io_manager.read_frame` (psycopg text `fetchall`);
  and the same with a psycopg binary cursor. Each frame is compared with the frame written.

Times are best of REPEATS. Memory is the peak RSS delta of this process during the call
(psutil, sampled every SAMPLE_SECONDS; tracemalloc would not see Arrow's or libpq's buffers),
the largest over the repeats, with freed memory handed back to the OS before each call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psutil
import psycopg
import pyarrow as pa
from psycopg import sql

from sigmasight_pipeline.resources.database import create_database, database_url, drop_database
from sigmasight_pipeline.resources.io_manager import read_frame
from sigmasight_pipeline.resources.tables import (
    arrow_connection,
    ingest,
    query_frame,
    table_columns,
)

ROWS = 1_000_000
SESSIONS = 100  # ROWS / SESSIONS positions per session
POSITIONS_PER_PORTFOLIO = 50
REPEATS = 2  # best of 2: the CSV reference alone takes ~20 s a write on 2 cores
SEED = 20_240_628
SAMPLE_SECONDS = 0.01
MB = 1_000_000

SCHEMA = "io_bench"
TABLE = "position_values_like"
KEY_COLUMNS = ["trade_date", "portfolio_id", "position_id"]
FLOAT_COLUMNS = [
    "quantity", "price", "market_value", "exposure", "cost_basis", "unrealized_pnl",
    "daily_pnl", "delta_exposure",
]  # fmt: skip
TEXT_COLUMN = "price_source"
COLUMNS = [*KEY_COLUMNS, *FLOAT_COLUMNS, TEXT_COLUMN]
SQL_TYPES = {
    "trade_date": "date",
    "portfolio_id": "integer",
    "position_id": "integer",
    **dict.fromkeys(FLOAT_COLUMNS, "double precision"),
    TEXT_COLUMN: "text",
}


def make_frame(rows: int = ROWS, sessions: int = SESSIONS, seed: int = SEED) -> pd.DataFrame:
    """Seeded position-day rows: `sessions` NYSE-like weekdays x rows/sessions positions, dates
    as datetime64 (as the assets hand them over), prices and values on realistic scales."""
    if rows % sessions:
        raise ValueError(f"rows ({rows}) must be a multiple of sessions ({sessions})")
    positions = rows // sessions
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-01-02", periods=sessions)
    position_id = np.tile(np.arange(1, positions + 1, dtype=np.int32), sessions)
    quantity = np.round(rng.normal(0.0, 500.0, rows))
    price = np.round(rng.uniform(5.0, 900.0, rows), 2)
    market_value = quantity * price
    cost_basis = quantity * np.round(price * rng.uniform(0.7, 1.3, rows), 2)
    return pd.DataFrame(
        {
            "trade_date": np.repeat(days.to_numpy(), positions),
            "portfolio_id": ((position_id - 1) // POSITIONS_PER_PORTFOLIO + 1).astype(np.int32),
            "position_id": position_id,
            "quantity": quantity,
            "price": price,
            "market_value": market_value,
            "exposure": np.abs(market_value),
            "cost_basis": cost_basis,
            "unrealized_pnl": market_value - cost_basis,
            "daily_pnl": market_value * rng.normal(0.0, 0.02, rows),
            "delta_exposure": market_value * rng.uniform(-1.0, 1.0, rows),
            TEXT_COLUMN: np.where(rng.random(rows) < 0.97, "market", "carried_forward"),
        }
    )


@dataclass(frozen=True)
class FrameDiff:
    """How a frame read back differs from the frame written (rows matched on the key)."""

    rows: int
    max_abs_diff: float  # over the float columns
    mismatched: tuple[str, ...]  # non-float columns (or the row count) that differ

    @property
    def equal(self) -> bool:
        return not self.mismatched and self.max_abs_diff == 0.0


def frame_diff(expected: pd.DataFrame, actual: pd.DataFrame) -> FrameDiff:
    """Compare `actual` with `expected` on COLUMNS, both sorted by KEY_COLUMNS (row order is
    not part of a table read)."""
    if len(actual) != len(expected):
        return FrameDiff(len(actual), float("nan"), ("row count",))
    exp = expected[COLUMNS].sort_values(KEY_COLUMNS, ignore_index=True)
    act = actual[COLUMNS].sort_values(KEY_COLUMNS, ignore_index=True)
    mismatched = tuple(
        c
        for c in [*KEY_COLUMNS, TEXT_COLUMN]
        if not np.array_equal(exp[c].to_numpy(), act[c].to_numpy())
    )
    diffs = np.abs(exp[FLOAT_COLUMNS].to_numpy(float) - act[FLOAT_COLUMNS].to_numpy(float))
    return FrameDiff(len(actual), float(np.nanmax(diffs, initial=0.0)), mismatched)


# -- memory ----------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)


def _release_freed_memory() -> None:
    """Hand freed memory back to the OS, so each call's RSS delta starts from the same floor."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    if hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


@contextmanager
def peak_rss_delta() -> Iterator[list[int]]:
    """Sample this process's RSS in a thread while the block runs; the list yielded holds the
    peak minus the RSS at entry, in bytes, once the block ends."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = [0]
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result[0] = max(peak[0], process.memory_info().rss) - baseline


@dataclass
class Timing:
    best_s: float
    peak_rss_mb: float
    result: Any


def _measure(fn: Callable[[], Any], repeats: int, before: Callable[[], None] = lambda: None):
    """Best time of `repeats` calls of `fn` (each after `before`, untimed) and the largest
    peak RSS delta; the last call's result."""
    best, peak, out = float("inf"), 0, None
    for _ in range(repeats):
        before()
        out = None
        _release_freed_memory()
        with peak_rss_delta() as rss:
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
        best, peak = min(best, elapsed), max(peak, rss[0])
    return Timing(best, peak / MB, out)


# -- writes ----------------------------------------------------------------------------------


def _qualified() -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(TABLE))


def _copy_statement(options: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(
        _qualified(), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.SQL(options)
    )


def write_csv_copy(conn: psycopg.Connection, frame: pd.DataFrame) -> None:
    """The old design (`copy_dataframe` before the ADBC IO manager): a CSV built by pandas."""
    buffer = io.StringIO()
    frame[COLUMNS].to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d", na_rep="")
    with conn.cursor() as cursor, cursor.copy(_copy_statement("FORMAT csv")) as copy:
        copy.write(buffer.getvalue())
    conn.commit()


def write_binary_copy(conn: psycopg.Connection, frame: pd.DataFrame) -> None:
    """psycopg binary COPY, one `write_row` per row of Python values."""
    values = [frame["trade_date"].dt.date.tolist()] + [frame[c].tolist() for c in COLUMNS[1:]]
    with conn.cursor() as cursor, cursor.copy(_copy_statement("FORMAT binary")) as copy:
        copy.set_types([SQL_TYPES[c] for c in COLUMNS])
        for row in zip(*values, strict=True):
            copy.write_row(row)
    conn.commit()


def _stored_totals(conn: psycopg.Connection) -> np.ndarray:
    sums = sql.SQL(", ").join(sql.SQL("sum({})").format(sql.Identifier(c)) for c in FLOAT_COLUMNS)
    query = sql.SQL(
        "SELECT count(*), sum(portfolio_id::bigint), sum(position_id::bigint), "
        "sum(trade_date - DATE '2000-01-01'), count(*) FILTER (WHERE {} = 'market'), {} FROM {}"
    ).format(sql.Identifier(TEXT_COLUMN), sums, _qualified())
    row = conn.execute(query).fetchone()
    conn.commit()
    return np.array(row, dtype=float)


def frame_totals(frame: pd.DataFrame) -> np.ndarray:
    """What `_stored_totals` returns for a table holding exactly `frame`."""
    days = (frame["trade_date"] - pd.Timestamp("2000-01-01")).dt.days
    return np.array(
        [
            len(frame),
            frame["portfolio_id"].astype(np.int64).sum(),
            frame["position_id"].astype(np.int64).sum(),
            days.sum(),
            (frame[TEXT_COLUMN] == "market").sum(),
            *(frame[c].sum() for c in FLOAT_COLUMNS),
        ],
        dtype=float,
    )


# -- reads -----------------------------------------------------------------------------------


def _select() -> sql.Composed:
    return sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), _qualified()
    )


def read_binary_fetchall(conn: psycopg.Connection) -> pd.DataFrame:
    """`read_frame`'s path with a binary cursor: `fetchall` of tuples, then a DataFrame."""
    with conn.cursor(binary=True) as cursor:
        cursor.execute(_select())
        frame = pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])
    conn.commit()
    frame["trade_date"] = pd.to_datetime(frame["trade_date"])
    return frame


def read_text_fetchall(conn: psycopg.Connection) -> pd.DataFrame:
    frame = read_frame(conn, _select())
    conn.commit()
    return frame


# -- the benchmark ---------------------------------------------------------------------------


def _row(benchmark: str, ours: Timing, reference: str, ref: Timing, check: str, notes: str):
    return {
        "benchmark": benchmark,
        "ours_s": ours.best_s,
        "reference": reference,
        "reference_s": ref.best_s,
        "ratio": ref.best_s / ours.best_s,
        "ours_peak_rss_mb": ours.peak_rss_mb,
        "reference_peak_rss_mb": ref.peak_rss_mb,
        "check": check,
        "notes": notes,
    }


def _write_check(expected: np.ndarray, stored: np.ndarray) -> str:
    if not np.array_equal(expected[:5], stored[:5]):
        raise AssertionError(f"rows written differ: expected {expected[:5]}, stored {stored[:5]}")
    rel = np.abs(stored[5:] - expected[5:]) / np.maximum(np.abs(expected[5:]), 1.0)
    if rel.max() > 1e-9:
        raise AssertionError(f"float sums written differ (max relative diff {rel.max():.2e})")
    return f"{int(stored[0]):,} rows, sums match (rel {rel.max():.0e})"


def _read_check(frame: pd.DataFrame, read: pd.DataFrame) -> str:
    diff = frame_diff(frame, read)
    if not diff.equal:
        raise AssertionError(f"frame read back differs: {diff}")
    return f"{diff.rows:,} rows equal, max abs diff {diff.max_abs_diff:g}"


def run(rows: int = ROWS, repeats: int = REPEATS) -> list[dict]:
    """Writes then reads of `rows` rows, ours and the references; one row per comparison."""
    server = database_url()
    name = f"sigmasight_io_bench_{os.getpid()}"
    drop_database(server, name)
    url = create_database(server, name)
    frame = make_frame(rows)
    expected = frame_totals(frame)
    columns = ", ".join(f"{c} {SQL_TYPES[c]} NOT NULL" for c in COLUMNS)
    try:
        with (
            psycopg.connect(url) as pg,
            arrow_connection(url) as adbc_conn,
        ):
            pg.execute(f"CREATE SCHEMA {SCHEMA}")
            pg.execute(f"CREATE TABLE {SCHEMA}.{TABLE} ({columns})")
            pg.commit()
            table_columns(url, SCHEMA, TABLE)  # ingest's column lookup, cached per process

            def truncate() -> None:
                pg.execute(sql.SQL("TRUNCATE {}").format(_qualified()))
                pg.commit()

            def write_ours() -> None:
                ingest(adbc_conn, url, SCHEMA, TABLE, frame)
                adbc_conn.commit()

            writes: dict[str, tuple[Timing, str]] = {}
            # ours last, so the reads below read the table ours wrote
            for label, fn in [
                ("binary", lambda: write_binary_copy(pg, frame)),
                ("csv", lambda: write_csv_copy(pg, frame)),
                ("ours", write_ours),
            ]:
                timing = _measure(fn, repeats, before=truncate)
                writes[label] = (timing, _write_check(expected, _stored_totals(pg)))
                print(f"   write {label}: {timing.best_s:.2f} s", flush=True)

            reads: dict[str, tuple[Timing, str]] = {}
            for label, fn in [
                ("ours", lambda: query_frame(url, _select())),
                ("text", lambda: read_text_fetchall(pg)),
                ("binary", lambda: read_binary_fetchall(pg)),
            ]:
                timing = _measure(fn, repeats)
                reads[label] = (timing, _read_check(frame, timing.result))
                timing.result = None
                print(f"   read {label}: {timing.best_s:.2f} s", flush=True)
    finally:
        drop_database(server, name)

    shape = (
        f"{rows:,} rows x {len(COLUMNS)} columns (a date, 2 integer, {len(FLOAT_COLUMNS)} float, "
        "1 text; no NULLs) in a table without index"
    )
    common = f"best of {repeats}; RSS: peak delta of this process (psutil), largest of the runs"
    ours_w, ours_r = writes["ours"][0], reads["ours"][0]
    return [
        _row(
            f"write {rows:,} rows: ADBC ingest vs psycopg binary COPY",
            ours_w, "psycopg binary COPY, write_row per row", writes["binary"][0],
            writes["binary"][1],
            f"{shape}; ours is tables.ingest (DataFrame to Arrow, ADBC's binary COPY), the "
            "reference the columns' tolist() (dates to datetime.date) and write_row with "
            "set_types; one transaction each, commit timed, table truncated before; check: SQL "
            f"count and sums against the frame (ours: {writes['ours'][1]}); {common}",
        ),
        _row(
            f"write {rows:,} rows: ADBC ingest vs pandas CSV COPY (old design)",
            ours_w, "psycopg COPY of DataFrame.to_csv", writes["csv"][0], writes["csv"][1],
            "the IO manager's write before ADBC (copy_dataframe of commit 5ae25c5); building the "
            f"CSV text is most of its time; {common}",
        ),
        _row(
            f"read {rows:,} rows: ADBC query_frame vs psycopg fetchall (old design)",
            ours_r, "psycopg text fetchall (read_frame)", reads["text"][0], reads["text"][1],
            "the whole table into one DataFrame; ours is tables.query_frame (Arrow to pandas, "
            "TableReader.frame's path), the reference io_manager.read_frame (the IO manager's "
            "read before ADBC); no ORDER BY, frames compared with the one written after sorting "
            f"on the key (ours: {reads['ours'][1]}); {common}",
        ),
        _row(
            f"read {rows:,} rows: ADBC query_frame vs psycopg binary fetchall",
            ours_r, "psycopg binary-cursor fetchall", reads["binary"][0], reads["binary"][1],
            f"read_frame's path with cursor(binary=True); {common}",
        ),
    ]  # fmt: skip


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: ours {row['ours_s']:.2f} s vs {row['reference']} "
            f"{row['reference_s']:.2f} s, ratio {row['ratio']:.1f}x; peak RSS "
            f"{row['ours_peak_rss_mb']:.0f} vs {row['reference_peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
