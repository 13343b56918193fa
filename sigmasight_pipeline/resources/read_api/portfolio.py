"""The portfolio overview: value, exposures, both market betas, P&L with MTD/YTD coverage.

MTD / YTD P&L is the sum of the snapshots' `daily_pnl` from the first day of the month / year
to `as_of`, reported only when the snapshots cover every NYSE session of that period on which
the portfolio existed (from the later of the period start and its first position's entry
date); otherwise null, and the coverage says how many sessions were found of how many expected.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch, no_snapshot
from sigmasight_pipeline.resources.read_api.models import (
    Coverage,
    NoDataError,
    Overview,
    PnL,
    PositionCounts,
)

_S = SCHEMA

OVERVIEW_SQL = f"""
WITH d AS (
    SELECT max(trade_date) AS day FROM {_S}.portfolio_snapshots
    WHERE portfolio_id = %(pid)s AND (%(as_of)s::date IS NULL OR trade_date = %(as_of)s::date)
)
SELECT s.*, p.name, r.beta AS beta_realized,
       date_trunc('month', s.trade_date)::date AS month_start,
       date_trunc('year', s.trade_date)::date AS year_start,
       m.pnl AS mtd_pnl, m.n AS mtd_n, y.pnl AS ytd_pnl, y.n AS ytd_n,
       (SELECT min(entry_date) FROM {_S}.positions WHERE portfolio_id = %(pid)s) AS inception
FROM d
JOIN {_S}.portfolio_snapshots s ON s.portfolio_id = %(pid)s AND s.trade_date = d.day
JOIN {_S}.portfolios p ON p.id = s.portfolio_id
LEFT JOIN {_S}.portfolio_risk_metrics r ON r.portfolio_id = %(pid)s AND r.trade_date = d.day
CROSS JOIN LATERAL (
    SELECT sum(daily_pnl) AS pnl, count(*) AS n FROM {_S}.portfolio_snapshots
    WHERE portfolio_id = %(pid)s
      AND trade_date BETWEEN date_trunc('month', d.day)::date AND d.day
) m
CROSS JOIN LATERAL (
    SELECT sum(daily_pnl) AS pnl, count(*) AS n FROM {_S}.portfolio_snapshots
    WHERE portfolio_id = %(pid)s
      AND trade_date BETWEEN date_trunc('year', d.day)::date AND d.day
) y
"""


@lru_cache(maxsize=4096)
def session_count(start: date, end: date) -> int | None:
    """NYSE sessions in [start, end]; None when the trading calendar does not cover them."""
    from sigmasight_pipeline import calendar

    if start > end:
        return 0
    try:
        return len(calendar.sessions(start, end))
    except Exception:  # dates outside the calendar's bounds
        return None


def coverage(
    period: str, period_start: date, day: date, inception: date | None, present: int
) -> Coverage:
    """How many of the period's sessions (from the later of its start and `inception` to
    `day`) have a snapshot, and why the period P&L is not reported when some are missing."""
    counted_from = max(period_start, inception) if inception else period_start
    expected = session_count(counted_from, day)
    complete = expected is not None and present >= expected
    note = None
    if expected is None:
        note = f"no trading calendar for {counted_from}..{day}: {period} P&L not reported"
    elif not complete:
        note = (
            f"snapshots cover {present} of {expected} sessions from {counted_from} to {day}: "
            f"{period} P&L not reported"
        )
    return Coverage(
        period_start=period_start,
        counted_from=counted_from,
        sessions_expected=expected,
        sessions_present=present,
        complete=complete,
        note=note,
    )


def overview(conn: psycopg.Connection, portfolio_id: int, as_of: date | None) -> Overview:
    """Value, exposures, betas, daily/MTD/YTD P&L and position counts on the day (one query)."""
    rows = fetch(conn, OVERVIEW_SQL, {"pid": portfolio_id, "as_of": as_of})
    if not rows:
        raise NoDataError(no_snapshot(portfolio_id, as_of))
    r = rows[0]
    day: date = r["trade_date"]
    mtd = coverage("MTD", r["month_start"], day, r["inception"], int(r["mtd_n"]))
    ytd = coverage("YTD", r["year_start"], day, r["inception"], int(r["ytd_n"]))
    return Overview(
        portfolio_id=portfolio_id,
        name=r["name"],
        as_of=day,
        total_value_usd=r["total_value"],
        long_exposure_usd=r["long_exposure"],
        short_exposure_usd=r["short_exposure"],
        gross_exposure_usd=r["gross_exposure"],
        net_exposure_usd=r["net_exposure"],
        beta_holdings_60d=r["beta_market"],
        beta_realized_60d=r["beta_realized"],
        pnl=PnL(
            daily_usd=r["daily_pnl"],
            mtd_usd=float(r["mtd_pnl"]) if mtd.complete else None,
            ytd_usd=float(r["ytd_pnl"]) if ytd.complete else None,
            unrealized_usd=r["unrealized_pnl"],
            realized_usd=r["realized_pnl_usd"],
            realized_cumulative_usd=r["realized_pnl_cum_usd"],
            trailing_usd=r["window_pnl"],
            trailing_start=r["window_start"],
            mtd_coverage=mtd,
            ytd_coverage=ytd,
        ),
        equity_usd=r["equity_usd"],
        flows_usd=r["flows_usd"],
        twr_daily_fraction=r["twr_daily"],
        twr_cumulative_fraction=r["twr_cumulative"],
        position_counts=PositionCounts(
            LONG=r["long_count"],
            SHORT=r["short_count"],
            LC=r["lc_count"],
            LP=r["lp_count"],
            SC=r["sc_count"],
            SP=r["sp_count"],
            total=r["position_count"],
            unpriced=r["unpriced_count"],
        ),
    )
