"""Volatility on a day: the portfolio's measures and those of every name it holds."""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import (
    NAMES_SQL,
    SCHEMA,
    fetch,
    no_rows,
    trading_day,
)
from sigmasight_pipeline.resources.read_api.depth_models import (
    PortfolioVolatility,
    UnderlyingVolatility,
    Volatility,
)

_S = SCHEMA
_MEASURES = """vol_21d AS vol_21d_fraction, vol_63d AS vol_63d_fraction,
       vol_252d AS vol_252d_fraction, vol_ewma AS vol_ewma_fraction,
       vol_har_21d AS vol_har_21d_fraction, vol_percentile_252d"""

PORTFOLIO_VOLATILITY_SQL = f"""
SELECT {_MEASURES}, vol_ex_ante_usd, vol_ex_ante AS vol_ex_ante_fraction, n_obs, reason
FROM {_S}.portfolio_volatility
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""

UNDERLYING_VOLATILITY_SQL = f"""
WITH names AS ({NAMES_SQL})
SELECT n.symbol, n.exposure_usd, n.weight_fraction, n.position_ids, {_MEASURES}, s.n_obs,
       CASE WHEN s.symbol IS NULL THEN 'no row in symbol_volatility' ELSE s.reason END AS reason
FROM names n
LEFT JOIN {_S}.symbol_volatility s ON s.trade_date = %(day)s AND s.symbol = n.symbol
ORDER BY abs(n.exposure_usd) DESC NULLS LAST, n.symbol
"""


def volatility(
    conn: psycopg.Connection, portfolio_id: int, as_of: date | None = None
) -> Volatility:
    """The portfolio's realized, EWMA, HAR and ex-ante volatility and, per name held, its
    exposure and the symbol's measures."""
    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day}
    rows = fetch(conn, PORTFOLIO_VOLATILITY_SQL, params)
    if not rows:
        raise no_rows("volatility", "portfolio_volatility", portfolio_id, day)
    names = fetch(conn, UNDERLYING_VOLATILITY_SQL, params)
    return Volatility(
        portfolio_id=portfolio_id,
        as_of=day,
        portfolio=PortfolioVolatility.model_validate(rows[0]),
        underlyings=[UnderlyingVolatility.model_validate(r) for r in names],
    )
