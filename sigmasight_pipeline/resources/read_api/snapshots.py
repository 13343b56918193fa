"""Portfolio history: daily snapshots over a date range, for charts."""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch
from sigmasight_pipeline.resources.read_api.models import SnapshotHistory, SnapshotPoint

_S = SCHEMA

SNAPSHOTS_SQL = f"""
SELECT trade_date, total_value AS total_value_usd, long_exposure AS long_exposure_usd,
       short_exposure AS short_exposure_usd, gross_exposure AS gross_exposure_usd,
       net_exposure AS net_exposure_usd, daily_pnl AS daily_pnl_usd,
       sum(daily_pnl) OVER (ORDER BY trade_date) AS cumulative_pnl_usd,
       unrealized_pnl AS unrealized_pnl_usd, position_count, delta,
       dollar_delta AS delta_1pct_usd, beta_market AS beta_holdings_60d,
       volatility_ann AS volatility_ann_fraction, sharpe,
       max_drawdown AS max_drawdown_fraction, var_95_1d AS var_95_1d_parametric_usd,
       realized_pnl_usd, realized_pnl_cum_usd, flows_usd, equity_usd,
       twr_daily AS twr_daily_fraction, twr_cumulative AS twr_cumulative_fraction
FROM {_S}.portfolio_snapshots
WHERE portfolio_id = %(pid)s AND trade_date BETWEEN %(start)s AND %(end)s
ORDER BY trade_date
"""


def snapshots(
    conn: psycopg.Connection, portfolio_id: int, start: date | None, end: date | None
) -> SnapshotHistory:
    """Daily snapshots in [start, end] (either bound open); empty if none. cumulative_pnl_usd
    sums daily P&L from the range's first day."""
    if start is not None and end is not None and start > end:
        raise ValueError(f"start ({start}) is after end ({end})")
    params = {"pid": portfolio_id, "start": start or date.min, "end": end or date.max}
    rows = fetch(conn, SNAPSHOTS_SQL, params)
    return SnapshotHistory(
        portfolio_id=portfolio_id,
        start=start,
        end=end,
        points=[SnapshotPoint.model_validate(r) for r in rows],
    )
