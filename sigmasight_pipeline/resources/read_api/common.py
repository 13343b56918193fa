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


def no_rows(what: str, table: str, portfolio_id: int, day: date) -> NoDataError:
    """The error for a day with a snapshot but no rows in `table`: names the day and table."""
    return NoDataError(f"no {what} for portfolio {portfolio_id} on {day} (no rows in {table})")


# The names held on the day: each position's dollar exposure on its underlying (stocks at
# exposure, options at delta-adjusted exposure, as the risk assets count them), netted per
# underlying; weight = |net| / the sum of |net| over names. A name none of whose positions has
# an exposure (unpriced) has a NULL exposure and weight. Largest first, then by symbol. A
# position closed on the day (quantity 0) holds nothing at its close and is left out.
NAMES_SQL = f"""
WITH held AS (
    SELECT p.underlying, v.position_id,
           CASE WHEN p.position_type IN ('LONG', 'SHORT') THEN v.exposure
                ELSE g.delta_adjusted_exposure END AS exposure
    FROM {SCHEMA}.position_values v
    JOIN {SCHEMA}.positions p ON p.id = v.position_id
    LEFT JOIN {SCHEMA}.position_greeks g
           ON g.portfolio_id = v.portfolio_id AND g.trade_date = v.trade_date
          AND g.position_id = v.position_id
    WHERE v.portfolio_id = %(pid)s AND v.trade_date = %(day)s AND v.quantity <> 0
), names AS (
    SELECT underlying AS symbol, sum(exposure) AS exposure_usd, count(*) AS position_count,
           array_agg(position_id ORDER BY position_id) AS position_ids
    FROM held GROUP BY underlying
)
SELECT symbol, exposure_usd,
       abs(exposure_usd) / nullif(sum(abs(exposure_usd)) OVER (), 0) AS weight_fraction,
       position_count, position_ids
FROM names
ORDER BY abs(exposure_usd) DESC NULLS LAST, symbol
"""

# The portfolio's rate beta and linear P&L per +100 bp (written into its snapshot).
RATES_SQL = f"""
SELECT beta_rates AS beta_rates_60d, pnl_usd_per_100bp
FROM {SCHEMA}.portfolio_snapshots WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""


def rate_sensitivity(conn: psycopg.Connection, portfolio_id: int, day: date) -> dict[str, Any]:
    """beta_rates_60d and pnl_usd_per_100bp of the day's snapshot (None when not computed)."""
    rows = fetch(conn, RATES_SQL, {"pid": portfolio_id, "day": day})
    return rows[0] if rows else {"beta_rates_60d": None, "pnl_usd_per_100bp": None}
