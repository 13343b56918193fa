"""A chunked write (`write_table_slice`): chunks are written on a background thread while the
next is computed, and the write is still all or nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest
from dagster._core.storage.db_io_manager import TableSlice

from sigmasight_pipeline.resources import io_manager
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.io_manager import TableWrite, write_table_slice
from sigmasight_pipeline.resources.tables import arrow_connection, query_frame

TABLE = "write_behind_probe"
ROWS = 20_000


@pytest.fixture
def probe_table(db_url: str) -> Iterator[str]:
    """A table holding the previous write's one row."""
    name = f"sigmasight.{TABLE}"
    with connect(db_url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (chunk integer NOT NULL, n integer NOT NULL)")
        conn.execute(f"INSERT INTO {name} VALUES (0, 0)")
        conn.commit()
    yield name
    with connect(db_url) as conn:
        conn.execute(f"DROP TABLE {name}")
        conn.commit()


def _chunk(k: int) -> pd.DataFrame:
    return pd.DataFrame({"chunk": k, "n": range(ROWS)})


def _write(db_url: str, frames) -> None:
    with arrow_connection(db_url) as writer:
        write_table_slice(writer, db_url, TableSlice(TABLE, "sigmasight"), TableWrite(frames))


def _stored(db_url: str, name: str) -> list[tuple[int, int]]:
    counts = query_frame(db_url, f"SELECT chunk, count(*) AS n FROM {name} GROUP BY 1 ORDER BY 1")
    return list(zip(counts["chunk"], counts["n"], strict=True))


def test_the_next_chunk_is_computed_while_the_last_one_is_written(db_url, probe_table, monkeypatch):
    """Every chunk is written, in order, on another thread; the generator is resumed for chunk
    k + 1 before chunk k's write has returned."""
    writes: list[tuple[int, str, float, float]] = []
    real_ingest = io_manager.ingest

    def slow_ingest(conn, url, schema, table, frame):
        began = time.perf_counter()
        rows = real_ingest(conn, url, schema, table, frame)
        time.sleep(0.3)  # a write slower than computing the next chunk
        writes.append((int(frame["chunk"].iloc[0]), threading.current_thread().name, began,
                       time.perf_counter()))  # fmt: skip
        return rows

    monkeypatch.setattr(io_manager, "ingest", slow_ingest)
    resumed: dict[int, float] = {}

    def chunks() -> Iterator[pd.DataFrame]:
        for k in (1, 2, 3):
            resumed[k] = time.perf_counter()
            yield _chunk(k)

    _write(db_url, chunks())
    assert _stored(db_url, probe_table) == [(1, ROWS), (2, ROWS), (3, ROWS)]  # row 0 replaced
    assert [w[0] for w in writes] == [1, 2, 3]
    assert all(name.startswith("sigmasight-ingest") for _, name, _, _ in writes)
    ended = {k: end for k, _, _, end in writes}
    assert resumed[2] < ended[1] and resumed[3] < ended[2]
    began = {k: start for k, _, start, _ in writes}
    assert began[2] >= ended[1] and began[3] >= ended[2]  # one chunk written at a time


def test_a_chunk_failing_to_compute_leaves_the_previous_rows(db_url, probe_table):
    """Chunks already handed to the writer are rolled back with the rest: the error raised is
    the computation's, and the table keeps what it had."""

    def chunks() -> Iterator[pd.DataFrame]:
        yield _chunk(1)
        yield _chunk(2)
        raise RuntimeError("chunk 3 could not be computed")

    with pytest.raises(RuntimeError, match="chunk 3 could not be computed"):
        _write(db_url, chunks())
    assert _stored(db_url, probe_table) == [(0, 1)]


def test_a_chunk_failing_to_write_stops_the_write_and_leaves_the_previous_rows(db_url, probe_table):
    """A write that fails on the background thread raises in the caller (at the next chunk or
    at the end), no later chunk is computed past it, and nothing of the write is kept."""
    computed = []

    def chunks() -> Iterator[pd.DataFrame]:
        for k in (1, 2, 3, 4):
            computed.append(k)
            frame = _chunk(k)
            if k == 2:
                frame["n"] = None  # NOT NULL violated in the database
            yield frame

    with pytest.raises(Exception, match="null value"):
        _write(db_url, chunks())
    assert _stored(db_url, probe_table) == [(0, 1)]
    assert computed in ([1, 2, 3], [1, 2, 3, 4])  # raised when chunk 3 or 4 was handed over


def test_every_table_written_by_session_has_an_index_that_finds_a_session(db_url):
    """A write replaces its sessions' rows with `DELETE ... WHERE trade_date ...` over every
    portfolio: each table with a trade_date column has an index whose first column is
    trade_date (a btree, or a BRIN where the key leads with portfolio_id), so that delete
    never reads the whole table (sql/0010, 0011, 0017, 0019)."""
    with connect(db_url) as conn:
        tables = conn.execute(
            """
            SELECT c.oid::regclass::text,
                   EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = c.oid
                             AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                                                WHERE attrelid = c.oid AND attname = 'trade_date'))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'sigmasight' AND c.relkind IN ('r', 'p')
              AND EXISTS (SELECT 1 FROM pg_attribute
                          WHERE attrelid = c.oid AND attname = 'trade_date' AND NOT attisdropped)
            ORDER BY 1
            """
        ).fetchall()
    assert len(tables) >= 20, tables
    assert [name for name, indexed in tables if not indexed] == []
