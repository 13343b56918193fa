"""What every query module shares: the schema name, row fetching and the trading day lookup."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sigmasight_pipeline.resources.read_api.models import NoDataError

SCHEMA = "sigmasight"
# Positions are listed in the PRD's type order (LONG SHORT LC LP SC SP), then by symbol.
TYPE_ORDER = "array_position(ARRAY['LONG','SHORT','LC','LP','SC','SP']::text[], {col})"

DAY_SQL = f"""
SELECT max(trade_date) AS day FROM {SCHEMA}.portfolio_snapshots
WHERE portfolio_id = %(pid)s AND (%(as_of)s::date IS NULL OR trade_date = %(as_of)s::date)
"""


def fetch(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of `query` as a dict."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall()


def latest_day(conn: psycopg.Connection, portfolio_id: int) -> date | None:
    """The portfolio's latest fully materialized day (its latest snapshot), or None."""
    rows = fetch(conn, DAY_SQL, {"pid": portfolio_id, "as_of": None})
    return rows[0]["day"] if rows else None


def trading_day(conn: psycopg.Connection, portfolio_id: int, as_of: date | None) -> date:
    """`as_of` if the portfolio has a snapshot that day, else (None) its latest snapshot day;
    NoDataError when there is none."""
    rows = fetch(conn, DAY_SQL, {"pid": portfolio_id, "as_of": as_of})
    day = rows[0]["day"] if rows else None
    if day is None:
        raise NoDataError(no_snapshot(portfolio_id, as_of))
    return day


def no_snapshot(portfolio_id: int, as_of: date | None) -> str:
    """The reason given when a portfolio has no snapshot (on a day, or at all)."""
    if as_of is None:
        return f"no snapshots for portfolio {portfolio_id} yet"
    return f"no snapshot for portfolio {portfolio_id} on {as_of}"
