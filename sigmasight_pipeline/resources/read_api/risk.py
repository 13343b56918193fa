"""Risk on a day: Greeks (portfolio, longs, shorts), factor exposures, risk metrics.

Greeks, factor exposures and risk metrics are read for exactly the day asked (never a silently
older one): when a table has no rows for it, the query raises `NoDataError`.
"""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import (
    SCHEMA,
    TYPE_ORDER,
    fetch,
    rate_sensitivity,
    trading_day,
)
from sigmasight_pipeline.resources.read_api.models import (
    EXTRA_FACTOR_ETFS,
    FACTORS,
    GREEKS_VIEWS,
    FactorExposure,
    FactorExposures,
    Greeks,
    GreeksView,
    GreekTotals,
    NoDataError,
    PositionGreeks,
    RiskMetrics,
    factor_method,
)

_S = SCHEMA

PORTFOLIO_GREEKS_SQL = f"""
SELECT delta, gamma, theta, vega, rho, dollar_delta AS delta_1pct_usd,
       delta_adjusted_exposure AS delta_adjusted_exposure_usd, fallback_count, position_count
FROM {_S}.portfolio_greeks
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s AND view = %(view)s
"""

# Options from position_greeks; stocks (not stored there) have delta 1 per share and no other
# Greek: their position delta is the quantity and their delta-adjusted exposure the exposure.
POSITION_GREEKS_SQL = f"""
WITH rows AS (
    SELECT g.position_id, p.symbol, p.position_type, v.quantity, p.multiplier, p.underlying,
           g.underlying_price AS underlying_price_usd, g.strike AS strike_usd, g.t_years,
           g.volatility AS volatility_ann_fraction, g.volatility_source,
           g.option_price AS option_price_usd, g.delta, g.gamma, g.theta, g.vega, g.rho,
           g.position_delta, g.position_gamma, g.position_theta, g.position_vega,
           g.position_rho, g.dollar_delta AS delta_1pct_usd,
           g.delta_adjusted_exposure AS delta_adjusted_exposure_usd, g.source, g.reason
    FROM {_S}.position_greeks g
    JOIN {_S}.position_values v USING (portfolio_id, trade_date, position_id)
    JOIN {_S}.positions p ON p.id = g.position_id
    WHERE g.portfolio_id = %(pid)s AND g.trade_date = %(day)s
    UNION ALL
    SELECT v.position_id, p.symbol, p.position_type, v.quantity, p.multiplier, p.underlying,
           v.price, NULL, NULL, NULL, NULL, NULL, 1.0, 0.0, 0.0, 0.0, 0.0,
           v.quantity * p.multiplier, 0.0, 0.0, 0.0, 0.0, v.exposure / 100, v.exposure,
           'stock', NULL
    FROM {_S}.position_values v JOIN {_S}.positions p ON p.id = v.position_id
    WHERE v.portfolio_id = %(pid)s AND v.trade_date = %(day)s
      AND p.position_type IN ('LONG', 'SHORT')
)
SELECT * FROM rows
WHERE quantity <> 0  -- a position closed on the day holds nothing at its close
  AND (%(view)s = 'portfolio' OR (%(view)s = 'longs' AND quantity > 0)
       OR (%(view)s = 'shorts' AND quantity < 0))
ORDER BY {TYPE_ORDER.format(col="position_type")}, symbol, position_id
"""

ANY_GREEKS_SQL = f"""
SELECT 1 FROM {_S}.portfolio_greeks WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
UNION ALL
SELECT 1 FROM {_S}.position_greeks WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
LIMIT 1
"""

FACTORS_SQL = f"""
SELECT factor, beta, dollar_exposure AS exposure_usd, coverage AS coverage_fraction
FROM {_S}.portfolio_factor_exposures
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
ORDER BY factor
"""

RISK_SQL = f"""
SELECT beta AS beta_realized_60d, volatility_ann AS volatility_ann_fraction, sharpe, sortino,
       max_drawdown AS max_drawdown_fraction, var_95_1d AS var_95_1d_parametric_usd,
       cvar_95_1d AS cvar_95_1d_parametric_usd, var_95_1d_hist AS var_95_1d_hist_fraction,
       cvar_95_1d_hist AS cvar_95_1d_hist_fraction, var_95_1d_hist_usd, cvar_95_1d_hist_usd,
       n_obs, reason
FROM {_S}.portfolio_risk_metrics
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
"""


def sum_greeks(positions: list[PositionGreeks]) -> GreekTotals:
    """View totals from the positions (when the stored aggregate row is missing)."""
    return GreekTotals(
        delta=sum(p.position_delta for p in positions),
        gamma=sum(p.position_gamma for p in positions),
        theta=sum(p.position_theta for p in positions),
        vega=sum(p.position_vega for p in positions),
        rho=sum(p.position_rho for p in positions),
        delta_1pct_usd=sum(p.delta_1pct_usd or 0.0 for p in positions),
        delta_adjusted_exposure_usd=sum(p.delta_adjusted_exposure_usd or 0.0 for p in positions),
        fallback_count=sum(1 for p in positions if p.source == "fallback"),
        position_count=len(positions),
    )


def greeks(
    conn: psycopg.Connection,
    portfolio_id: int,
    view: GreeksView = "portfolio",
    as_of: date | None = None,
) -> Greeks:
    """Greeks summed over the view and per position (longs: quantity > 0, shorts: < 0)."""
    if view not in GREEKS_VIEWS:
        raise ValueError(f"view must be one of {GREEKS_VIEWS}, not {view!r}")
    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day, "view": view}
    stored = fetch(conn, PORTFOLIO_GREEKS_SQL, params)
    rows = fetch(conn, POSITION_GREEKS_SQL, params)
    # A view may be empty (no shorts); only a day without any Greeks is missing data.
    if not stored and not rows and not fetch(conn, ANY_GREEKS_SQL, params):
        raise NoDataError(f"no Greeks for portfolio {portfolio_id} on {day}")
    positions = [PositionGreeks.model_validate(r) for r in rows]
    if stored:
        totals, source = GreekTotals.model_validate(stored[0]), "stored"
    else:
        totals, source = sum_greeks(positions), "summed"
    return Greeks(
        portfolio_id=portfolio_id,
        as_of=day,
        view=view,
        totals=totals,
        totals_source=source,  # type: ignore[arg-type]
        positions=positions,
    )


def factor_exposures(
    conn: psycopg.Connection, portfolio_id: int, as_of: date | None = None
) -> FactorExposures:
    """Beta and dollar exposure of the eight factors (null where not computable), then any
    other stored (Rates), each with the method of its beta; and the linear P&L per +100 bp."""
    day = trading_day(conn, portfolio_id, as_of)
    rows = fetch(conn, FACTORS_SQL, {"pid": portfolio_id, "day": day})
    if not rows:
        raise NoDataError(f"no factor exposures for portfolio {portfolio_id} on {day}")
    stored = {r["factor"]: r for r in rows}
    known = {name for name, _ in FACTORS}

    def exposure(name: str, etf: str | None) -> FactorExposure:
        row = stored.get(name, {})
        return FactorExposure(
            factor=name,
            etf=etf,
            method=factor_method(name),
            beta=row.get("beta"),
            exposure_usd=row.get("exposure_usd"),
            coverage_fraction=row.get("coverage_fraction"),
        )

    factors = [exposure(name, etf) for name, etf in FACTORS]
    factors += [
        exposure(r["factor"], EXTRA_FACTOR_ETFS.get(r["factor"]))
        for r in rows
        if r["factor"] not in known
    ]
    rates = rate_sensitivity(conn, portfolio_id, day)
    return FactorExposures(
        portfolio_id=portfolio_id,
        as_of=day,
        factors=factors,
        pnl_usd_per_100bp=rates["pnl_usd_per_100bp"],
    )


def risk_metrics(
    conn: psycopg.Connection, portfolio_id: int, as_of: date | None = None
) -> RiskMetrics:
    """Realized beta, volatility, Sharpe, Sortino, drawdown and VaR/CVaR on the day."""
    day = trading_day(conn, portfolio_id, as_of)
    rows = fetch(conn, RISK_SQL, {"pid": portfolio_id, "day": day})
    if not rows:
        raise NoDataError(f"no risk metrics for portfolio {portfolio_id} on {day}")
    return RiskMetrics(portfolio_id=portfolio_id, as_of=day, **rows[0])
