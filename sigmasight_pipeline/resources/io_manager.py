"""Postgres IO manager for pandas DataFrames, on Dagster's DbIOManager/DbClient/DbTypeHandler.

Writing a partition range is one transaction: delete the range, COPY the new rows in. Re-running
is idempotent, and a failure anywhere rolls back to the previous rows.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import psycopg
from dagster import ConfigurableIOManagerFactory, InputContext, OutputContext
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

from sigmasight_pipeline.resources.database import SCHEMA, database_url


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


def _qualified(table_slice: TableSlice) -> sql.Composed:
    return sql.SQL("{}.{}").format(
        sql.Identifier(table_slice.schema), sql.Identifier(table_slice.table)
    )


class PostgresClient(DbClient[psycopg.Connection]):
    """Connections and slice deletes for the IO manager; one transaction per `connect`."""

    @staticmethod
    @contextmanager
    def connect(
        context: OutputContext | InputContext, table_slice: TableSlice
    ) -> Iterator[psycopg.Connection]:
        url = (context.resource_config or {}).get("database_url") or database_url()
        with psycopg.connect(url) as conn, conn.transaction():
            yield conn

    @staticmethod
    def ensure_schema_exists(
        context: OutputContext, table_slice: TableSlice, connection: psycopg.Connection
    ) -> None:
        exists = connection.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (table_slice.schema, table_slice.table),
        ).fetchone()
        if not exists:
            raise RuntimeError(
                f"table {table_slice.schema}.{table_slice.table} does not exist: run the "
                "migrations in sql/ first (`sigmasight migrate`, or any sigmasight command)"
            )

    @staticmethod
    def delete_table_slice(
        context: OutputContext, table_slice: TableSlice, connection: psycopg.Connection
    ) -> None:
        where = partition_where_clause(table_slice.partition_dimensions)
        statement = sql.SQL("DELETE FROM {}").format(_qualified(table_slice))
        if where:
            statement = statement + sql.SQL(" WHERE ") + sql.SQL(where)  # type: ignore[arg-type]
        connection.execute(statement)

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        columns = ", ".join(f'"{c}"' for c in table_slice.columns) if table_slice.columns else "*"
        where = partition_where_clause(table_slice.partition_dimensions)
        statement = f'SELECT {columns} FROM "{table_slice.schema}"."{table_slice.table}"'
        return f"{statement} WHERE {where}" if where else statement


def copy_dataframe(
    connection: psycopg.Connection, schema: str, table: str, df: pd.DataFrame
) -> None:
    """Bulk-load `df` into schema.table with COPY (CSV), matching columns by name."""
    if df.empty:
        return
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d", na_rep="")
    statement = sql.SQL("COPY {}.{} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(schema),
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in df.columns),
    )
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(buffer.getvalue())


DATE_OID = 1082
FLOAT_OIDS = {700, 701, 1700}  # real, double precision, numeric
INT_OIDS = {20, 21, 23}


def read_frame(
    connection: psycopg.Connection, query: str | sql.Composable, params=None
) -> pd.DataFrame:
    """Run a query and return a DataFrame; date columns become datetime64."""
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        description = cursor.description or []
        frame = pd.DataFrame(cursor.fetchall(), columns=[d.name for d in description])
    # Typed by the column's SQL type, not by its values: an all-NULL float column must still be
    # float (NaN), not object (None).
    for column in description:
        if column.type_code == DATE_OID:
            frame[column.name] = pd.to_datetime(frame[column.name])
        elif column.type_code in FLOAT_OIDS or (
            column.type_code in INT_OIDS and frame[column.name].isna().any()
        ):
            frame[column.name] = frame[column.name].astype(float)
    return frame


class PandasPostgresTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Stores DataFrames with COPY and loads table slices back as DataFrames."""

    def handle_output(
        self,
        context: OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: psycopg.Connection,
    ):
        _check_rows_inside_slice(table_slice, obj)
        copy_dataframe(connection, table_slice.schema, table_slice.table, obj)
        return {"row_count": len(obj)}

    def load_input(
        self, context: InputContext, table_slice: TableSlice, connection: psycopg.Connection
    ) -> pd.DataFrame:
        if table_slice.partition_dimensions and not any(
            d.partitions for d in table_slice.partition_dimensions
        ):
            # Partitioned upstream with no partitions mapped (e.g. before the first session).
            return read_frame(
                connection, PostgresClient.get_select_statement(table_slice) + " LIMIT 0"
            )
        return read_frame(connection, PostgresClient.get_select_statement(table_slice))

    @property
    def supported_types(self):
        return [pd.DataFrame]


def _check_rows_inside_slice(table_slice: TableSlice, frame: pd.DataFrame) -> None:
    """Refuse rows outside the partitions being written: they would survive the next rewrite."""
    for dim in table_slice.partition_dimensions or []:
        if not isinstance(dim.partitions, TimeWindow) or frame.empty:
            continue
        start, end = _time_window_bounds(dim.partitions)
        values = pd.to_datetime(frame[dim.partition_expr])
        outside = frame[(values < start) | (values >= end)]
        if not outside.empty:
            raise ValueError(
                f"{table_slice.schema}.{table_slice.table}: {len(outside)} rows have "
                f"{dim.partition_expr} outside the partitions written [{start}, {end}), e.g. "
                f"{outside[dim.partition_expr].iloc[0]}"
            )


class PostgresPandasIOManager(ConfigurableIOManagerFactory):
    """Tables in schema `sigmasight`; partitioned assets declare `partition_expr` metadata."""

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; default: DATABASE_URL or the embedded server"
    )
    schema_: str = Field(default=SCHEMA, alias="schema")

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            type_handlers=[PandasPostgresTypeHandler()],
            db_client=PostgresClient(),
            database="sigmasight",
            schema=self.schema_,
            io_manager_name="PostgresPandasIOManager",
            default_load_type=pd.DataFrame,
        )
