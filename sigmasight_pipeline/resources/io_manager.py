"""Postgres IO manager on Dagster's DbIOManager/DbClient/DbTypeHandler.

Writes: an asset returns a `TableWrite` (or a DataFrame, for small unpartitioned tables). One
transaction deletes the slice being replaced (the run's partition range, narrowed by the
write's `replace` predicate: the run's portfolios or symbols) and appends the new rows chunk by
chunk through ADBC's binary COPY, or runs the write's `INSERT ... SELECT` for set-based assets.
Re-running is idempotent, and a failure anywhere (a bad chunk, a constraint, a crash) rolls back
to the previous rows. Chunks are produced lazily while they are written, so memory holds one
chunk at a time.

Reads: an input annotated `TableReader` is a lazy handle on the upstream slice (its partition
range after the partition mapping, e.g. with a lookback); the asset reads it in chunks (by
portfolio or symbol). Inputs annotated `pd.DataFrame` load the slice whole, for small tables.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import psycopg
from dagster import ConfigurableIOManagerFactory, InputContext, MetadataValue, OutputContext
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import (
    DbClient,
    DbIOManager,
    DbTypeHandler,
    TablePartitionDimension,
    TableSlice,
    static_where_clause,
)
from psycopg import sql
from pydantic import Field

from sigmasight_pipeline.resources.blocks import stored_rows, stored_table
from sigmasight_pipeline.resources.database import SCHEMA, database_url
from sigmasight_pipeline.resources.tables import (
    arrow_connection,
    execute,
    ingest,
    query_batches,
    query_frame,
    render,
    table_columns,
)

PREVIEW_ROWS = 5


def _time_window_bounds(window: TimeWindow) -> tuple[str, str]:
    return window.start.strftime("%Y-%m-%d"), window.end.strftime("%Y-%m-%d")


def partition_where_clause(dimensions: Sequence[TablePartitionDimension] | None) -> str:
    """SQL for the rows of a table slice; empty when the slice is the whole table."""
    clauses = []
    for dim in dimensions or []:
        if isinstance(dim.partitions, TimeWindow):
            start, end = _time_window_bounds(dim.partitions)
            clauses.append(f"{dim.partition_expr} >= '{start}' AND {dim.partition_expr} < '{end}'")
        elif dim.partitions:
            clauses.append(static_where_clause(dim))
    return " AND ".join(clauses)


def _qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def _url(context: OutputContext | InputContext) -> str:
    return (context.resource_config or {}).get("database_url") or database_url()


# -- what assets hand over and receive -----------------------------------------------------


@dataclass
class WriteStats:
    """What a write stored: rows in all and per day, and the first rows (for the UI)."""

    rows: int = 0
    rows_by_day: Counter = field(default_factory=Counter)
    preview: pd.DataFrame | None = None

    def observe(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        if "trade_date" in frame and len(frame):
            counts = frame["trade_date"].value_counts()  # days formatted once each, not per row
            days = pd.to_datetime(counts.index, cache=False).strftime("%Y-%m-%d")
            self.rows_by_day.update(dict(zip(days, counts.to_numpy().tolist(), strict=True)))
        if self.preview is None and len(frame):
            self.preview = frame.head(PREVIEW_ROWS)

    def metadata(self) -> dict:
        """Rows in all, rows per day (runs of days with the same count, so a 90-day range is
        one short line), and a preview. Dagster copies a range run's output metadata to every
        partition's materialization, so it is kept small."""
        meta: dict = {"dagster/row_count": self.rows}
        if self.rows_by_day:
            meta["rows_by_day"] = rows_by_day_text(self.rows_by_day)
        if self.preview is not None:
            meta["preview"] = MetadataValue.md(self.preview.to_markdown(index=False))
        return meta


def rows_by_day_text(rows_by_day: Mapping[str, int]) -> str:
    """'2026-07-24..2026-11-27: 76 rows/day (89 days); 2026-11-30: 75 rows'."""
    runs: list[list] = []  # [first day, last day, rows, days]
    for day, n in sorted(rows_by_day.items()):
        if runs and runs[-1][2] == n:
            runs[-1][1] = day
            runs[-1][3] += 1
        else:
            runs.append([day, day, n, 1])
    return "; ".join(
        f"{first}: {n:,} rows" if days == 1 else f"{first}..{last}: {n:,} rows/day ({days} days)"
        for first, last, n, days in runs
    )


@dataclass(frozen=True)
class CompanionRows:
    """Rows for a companion table of a `TableWrite` (same transaction, same partitions)."""

    table: str
    frame: pd.DataFrame


@dataclass
class TableWrite:
    """Rows that replace a slice of the asset's table, in one transaction.

    frames: a DataFrame or an iterable of them (a generator is consumed while writing, so only
    one chunk is in memory). replace: SQL narrowing the rows deleted inside the run's partition
    range (default: the whole range), e.g. the run's portfolios. insert_select: a SELECT whose
    rows are inserted (set-based assets), instead of or after the frames. columns: the table
    columns the SELECT fills, and the columns of each frame that are stored (observers see the
    whole frame). observers: called with every chunk before it is written (checks, stats).
    summaries: called after the write; their dicts join the materialization's metadata (e.g.
    coverage and reasons counted by an observer). companions: tables written in the same
    transaction (e.g. price_issues with prices): {table: the predicate narrowing its partition
    range's delete}; their rows come from `frames` as `CompanionRows`. companion_observers:
    {table: called with every chunk of that companion before it is written}.
    """

    frames: pd.DataFrame | Iterable[pd.DataFrame | CompanionRows] = ()
    replace: sql.Composable | None = None
    insert_select: sql.Composable | None = None
    columns: Sequence[str] = ()
    observers: Sequence[Callable[[pd.DataFrame], None]] = ()
    summaries: Sequence[Callable[[], dict]] = ()
    companions: Mapping[str, sql.Composable | None] = field(default_factory=dict)
    companion_observers: Mapping[str, Sequence[Callable[[pd.DataFrame], None]]] = field(
        default_factory=dict
    )
    stats: WriteStats = field(default_factory=WriteStats)

    def chunks(self) -> Iterator[pd.DataFrame | CompanionRows]:
        if isinstance(self.frames, pd.DataFrame):
            yield self.frames
        else:
            yield from self.frames


@dataclass(frozen=True)
class TableReader:
    """A lazy handle on a table slice: the partition range an input maps to (after lookback).

    Nothing is read until `frame` or `batches` is called; pass `where` (e.g. a portfolio or
    symbol filter) to read one chunk of the slice.
    """

    url: str
    schema: str
    table: str
    where: str  # the slice's partition predicate ('' = whole table, 'FALSE' = no partitions)

    def query(
        self,
        columns: Sequence[str] | None,
        where: sql.Composable | None,
        order_by: Sequence[str] | None = None,
    ) -> sql.Composable:
        """The SELECT that `frame` and `batches` run."""
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns) if columns else sql.SQL("*")
        clauses = [sql.SQL(self.where)] if self.where else []
        if where is not None:
            clauses.append(where)
        query = sql.SQL("SELECT {} FROM {}").format(cols, _qualified(self.schema, self.table))
        if clauses:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
                sql.SQL("({})").format(c) for c in clauses
            )
        if order_by:
            query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(sql.Identifier(c) for c in order_by)
        return query

    def frame(
        self,
        columns: Sequence[str] | None = None,
        where: sql.Composable | None = None,
        order_by: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The slice's rows (narrowed by `where`) as one DataFrame."""
        frame = query_frame(self.url, self.query(columns, where, order_by))
        if columns and frame.empty:
            return frame.reindex(columns=list(columns))
        return frame

    def totals(
        self,
        sums: dict[str, str],
        group_by: Sequence[str],
        where: sql.Composable | None = None,
    ) -> pd.DataFrame:
        """`sum(column)` per group over the slice, computed by Postgres: {name: column}."""
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in group_by)
        aggregates = sql.SQL(", ").join(
            sql.SQL("sum({}) AS {}").format(sql.Identifier(column), sql.Identifier(name))
            for name, column in sums.items()
        )
        clauses = [sql.SQL(self.where)] if self.where else []
        if where is not None:
            clauses.append(where)
        query = sql.SQL("SELECT {}, {} FROM {}").format(
            keys, aggregates, _qualified(self.schema, self.table)
        )
        if clauses:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
                sql.SQL("({})").format(c) for c in clauses
            )
        query += sql.SQL(" GROUP BY {} ORDER BY {}").format(keys, keys)
        frame = query_frame(self.url, query)
        return frame.reindex(columns=[*group_by, *sums]) if frame.empty else frame

    def batches(
        self,
        columns: Sequence[str] | None = None,
        where: sql.Composable | None = None,
        order_by: Sequence[str] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The slice's rows as a stream of DataFrames (one Arrow batch each)."""
        return query_batches(self.url, self.query(columns, where, order_by))


# -- the Dagster pieces ---------------------------------------------------------------------


class Transaction:
    """An ADBC transaction opened on first use: loading an input as a lazy `TableReader` then
    costs no connection at all."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack = ExitStack()
        self._conn: adbc.Connection | None = None

    @property
    def conn(self) -> adbc.Connection:
        if self._conn is None:
            self._conn = self._stack.enter_context(arrow_connection(self.url))
        return self._conn

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc_info) -> bool | None:
        return self._stack.__exit__(*exc_info)


class PostgresClient(DbClient[Transaction]):
    """One transaction per `connect` (opened when first used); the type handler deletes the
    (narrowed) slice in it."""

    @staticmethod
    @contextmanager
    def connect(
        context: OutputContext | InputContext, table_slice: TableSlice
    ) -> Iterator[Transaction]:
        with Transaction(_url(context)) as transaction:
            yield transaction

    @staticmethod
    def ensure_schema_exists(
        context: OutputContext, table_slice: TableSlice, connection: Transaction
    ) -> None:
        table_columns(_url(context), table_slice.schema, table_slice.table)

    @staticmethod
    def delete_table_slice(
        context: OutputContext, table_slice: TableSlice, connection: Transaction
    ) -> None:
        """Nothing here: the type handler deletes, in the same transaction, exactly the rows
        the write replaces (the partition range narrowed to the run's portfolios or symbols)."""

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        columns = ", ".join(f'"{c}"' for c in table_slice.columns) if table_slice.columns else "*"
        where = partition_where_clause(table_slice.partition_dimensions)
        statement = f'SELECT {columns} FROM "{table_slice.schema}"."{table_slice.table}"'
        return f"{statement} WHERE {where}" if where else statement


def _slice_where(table_slice: TableSlice) -> str:
    """The slice's predicate: '' for a whole table, FALSE when no partition is mapped."""
    if table_slice.partition_dimensions and not any(
        d.partitions for d in table_slice.partition_dimensions
    ):
        return "FALSE"  # partitioned upstream with nothing mapped (e.g. before the first day)
    return partition_where_clause(table_slice.partition_dimensions)


def _check_rows_inside_slice(table_slice: TableSlice, frame: pd.DataFrame) -> None:
    """Refuse rows outside the partitions being written: they would survive the next rewrite."""
    for dim in table_slice.partition_dimensions or []:
        if not isinstance(dim.partitions, TimeWindow) or frame.empty:
            continue
        start, end = _time_window_bounds(dim.partitions)
        values = pd.to_datetime(frame[dim.partition_expr], cache=False)
        outside = frame[(values < start) | (values >= end)]
        if not outside.empty:
            raise ValueError(
                f"{table_slice.schema}.{table_slice.table}: {len(outside)} rows have "
                f"{dim.partition_expr} outside the partitions written [{start}, {end}), e.g. "
                f"{outside[dim.partition_expr].iloc[0]}"
            )


def _delete(
    conn: adbc.Connection,
    target: sql.Composable,
    table_slice: TableSlice,
    replace: sql.Composable | None,
) -> None:
    clauses = [sql.SQL(w) for w in [partition_where_clause(table_slice.partition_dimensions)] if w]
    if replace is not None:
        clauses.append(replace)
    delete = sql.SQL("DELETE FROM {}").format(target)
    if clauses:
        delete += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
            sql.SQL("({})").format(c) for c in clauses
        )
    execute(conn, delete)


class _WriteBehind:
    """Writes a write's chunks on one background thread while the caller computes the next:
    the binary COPY releases the GIL and the server works on another core. One chunk at most
    is being written (memory: two chunks, not one), in order, in the caller's transaction;
    a failed write raises at the next chunk or at the end, and the connection is never used
    by both threads at once (leaving waits for the chunk being written)."""

    def __init__(self, conn: adbc.Connection, url: str, schema: str):
        self._conn, self._url, self._schema = conn, url, schema
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sigmasight-ingest")
        self._writing: Future | None = None

    def ingest(self, table: str, frame: pd.DataFrame) -> None:
        """Append `frame` to `table`, or to its blocks table as blocks (`BLOCKS`)."""
        self.wait()
        table, frame = stored_rows(self._url, self._schema, table, frame)
        self._writing = self._thread.submit(
            ingest, self._conn, self._url, self._schema, table, frame
        )

    def wait(self) -> None:
        """Until the chunk being written is written; its error, if it failed."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if error is None:
                self.wait()
            elif self._writing is not None:
                futures_wait([self._writing])  # the caller's error wins; the chunk's is moot
        finally:
            self._thread.shutdown(wait=True)


# The planner settings of the set-based statements (`TableWrite.insert_select`), for their
# transaction only. They aggregate rows written moments before (the run's new session), which
# the tables' statistics do not know yet: the planner expects one row a side.
SET_BASED_SETTINGS = {
    # It nested loops over what are the whole book's rows: a daily run's portfolio_greeks took
    # 212 s that way, 0.45 s hashed. These statements always aggregate sets.
    "enable_nestloop": "off",
    # It merged a daily run's 50,000 positions with the day's short interest on trade_date
    # alone and rescanned its 600 rows for each (15 million rows visited; the factor
    # exposures' SELECT 1.52 s -> 0.17 s hashed).
    "enable_mergejoin": "off",
    # A backfill groups millions of rows (90 sessions x the book) into 90,000 portfolio-days:
    # with the default 4 MB the hash aggregate spilled in 21 batches (370 MB of temp files);
    # 128 MB holds it (portfolio_greeks' SELECT at 1,000 portfolios: 10.7 s -> 8.6 s).
    "work_mem": "128MB",
}


def write_table_slice(
    conn: adbc.Connection, url: str, table_slice: TableSlice, write: TableWrite
) -> WriteStats:
    """Delete the slice `write` replaces (and its companions' slices), then append its chunks /
    run its INSERT ... SELECT, all in the caller's transaction."""
    schema = table_slice.schema
    _delete(conn, _qualified(schema, stored_table(table_slice.table)), table_slice, write.replace)
    for table, replace in write.companions.items():
        _delete(conn, _qualified(schema, stored_table(table)), table_slice, replace)
    stats = write.stats
    with _WriteBehind(conn, url, schema) as writer:
        for item in write.chunks():
            if isinstance(item, CompanionRows):
                _check_rows_inside_slice(table_slice, item.frame)
                for observe in write.companion_observers.get(item.table, ()):
                    observe(item.frame)
                writer.ingest(item.table, item.frame)
                continue
            _check_rows_inside_slice(table_slice, item)
            for observe in write.observers:
                observe(item)
            stored = item[list(write.columns)] if write.columns else item
            stats.observe(stored)
            writer.ingest(table_slice.table, stored)
    if write.insert_select is not None:
        for setting, value in SET_BASED_SETTINGS.items():
            execute(conn, f"SET LOCAL {setting} = '{value}'")
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in write.columns)
        inserted = execute(
            conn,
            sql.SQL("INSERT INTO {} ({}) {}").format(
                _qualified(schema, table_slice.table), columns, write.insert_select
            ),
        )
        stats.rows += max(inserted, 0)
    return stats


STORAGE_TABLE = "storage_table"


def stored_slice(context: OutputContext | InputContext, table_slice: TableSlice) -> TableSlice:
    """The slice in the table the asset is stored in: its own name, or the table its
    `storage_table` metadata names (an asset whose contract name is a view over a compact
    table, e.g. portfolio_correlations over portfolio_correlation_matrices)."""
    output = context if isinstance(context, OutputContext) else context.upstream_output
    metadata = (output.definition_metadata if output is not None else None) or {}
    table = metadata.get(STORAGE_TABLE)
    return table_slice._replace(table=table) if table else table_slice


class TableWriteHandler(DbTypeHandler[TableWrite]):
    """Stores `TableWrite`s (chunked or set-based) and loads inputs as lazy `TableReader`s."""

    def handle_output(
        self,
        context: OutputContext,
        table_slice: TableSlice,
        obj: TableWrite,
        connection: Transaction,
    ):
        table_slice = stored_slice(context, table_slice)
        metadata = write_table_slice(connection.conn, _url(context), table_slice, obj).metadata()
        for summary in obj.summaries:
            metadata.update(summary())
        return metadata

    def load_input(
        self, context: InputContext, table_slice: TableSlice, connection: Transaction
    ) -> TableReader:
        table_slice = stored_slice(context, table_slice)
        return TableReader(
            _url(context), table_slice.schema, table_slice.table, _slice_where(table_slice)
        )

    @property
    def supported_types(self):
        return [TableWrite, TableReader]


class DataFrameHandler(DbTypeHandler[pd.DataFrame]):
    """Small tables whole: a DataFrame replaces the slice; inputs load as one DataFrame."""

    def handle_output(
        self,
        context: OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: Transaction,
    ):
        write = TableWrite(obj)
        return write_table_slice(connection.conn, _url(context), table_slice, write).metadata()

    def load_input(
        self, context: InputContext, table_slice: TableSlice, connection: Transaction
    ) -> pd.DataFrame:
        reader = TableReader(
            _url(context), table_slice.schema, table_slice.table, _slice_where(table_slice)
        )
        return reader.frame(columns=table_slice.columns)

    @property
    def supported_types(self):
        return [pd.DataFrame]


class PostgresPandasIOManager(ConfigurableIOManagerFactory):
    """Tables in schema `sigmasight`; partitioned assets declare `partition_expr` metadata."""

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: DATABASE_URL or the embedded server"
    )
    schema_: str = Field(default=SCHEMA, alias="schema")

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            type_handlers=[TableWriteHandler(), DataFrameHandler()],
            db_client=PostgresClient(),
            database="sigmasight",
            schema=self.schema_,
            io_manager_name="PostgresPandasIOManager",
            default_load_type=pd.DataFrame,
        )


# -- small reads outside the IO manager ----------------------------------------------------

DATE_OID = 1082
FLOAT_OIDS = {700, 701, 1700}  # real, double precision, numeric
INT_OIDS = {20, 21, 23}


def read_frame(
    connection: psycopg.Connection, query: str | sql.Composable, params=None
) -> pd.DataFrame:
    """A small query on a psycopg connection (inside its transaction) as a DataFrame; date
    columns become datetime64, float and nullable int columns float (typed by SQL type)."""
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        description = cursor.description or []
        frame = pd.DataFrame(cursor.fetchall(), columns=[d.name for d in description])
    for column in description:
        if column.type_code == DATE_OID:
            frame[column.name] = pd.to_datetime(frame[column.name], cache=False)
        elif column.type_code in FLOAT_OIDS or (
            column.type_code in INT_OIDS and frame[column.name].isna().any()
        ):
            frame[column.name] = frame[column.name].astype(float)
    return frame


def chunked(values: Sequence, size: int) -> Iterator[list]:
    """`values` in consecutive lists of at most `size` items."""
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


__all__ = [
    "PostgresPandasIOManager",
    "TableReader",
    "TableWrite",
    "WriteStats",
    "chunked",
    "read_frame",
    "render",
]
