"""The factor-vs-specific risk decomposition on a day, with the top contributing positions."""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.analytics.decomposition import MODEL_FACTORS
from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch, no_rows, trading_day
from sigmasight_pipeline.resources.read_api.depth_models import (
    PositionRiskContribution,
    RiskComponent,
    RiskDecomposition,
)

_S = SCHEMA
SPECIFIC = "specific"

# Factors in the model's order (Market, the six styles, Rates), then any other, specific last.
COMPONENTS_SQL = f"""
SELECT component, exposure_usd, variance_usd2, share_of_variance AS share_of_variance_fraction,
       vol_contribution_usd, total_vol_usd, coverage AS coverage_fraction, reason
FROM {_S}.portfolio_risk_decomposition
WHERE portfolio_id = %(pid)s AND trade_date = %(day)s
ORDER BY component = '{SPECIFIC}', array_position(%(factors)s::text[], component), component
"""

CONTRIBUTIONS_SQL = f"""
SELECT c.position_id, p.symbol, p.position_type, p.underlying, c.exposure_usd,
       c.marginal_vol_usd AS marginal_vol_per_usd, c.component_vol_usd, c.factor_vol_usd,
       c.specific_vol_usd, c.share_of_risk AS share_of_risk_fraction, c.reason,
       count(*) OVER () AS position_count
FROM {_S}.position_risk_contributions c
JOIN {_S}.positions p ON p.id = c.position_id
WHERE c.portfolio_id = %(pid)s AND c.trade_date = %(day)s
ORDER BY c.component_vol_usd DESC NULLS LAST, c.position_id
LIMIT %(top)s
"""


def risk_decomposition(
    conn: psycopg.Connection, portfolio_id: int, as_of: date | None = None, top: int = 10
) -> RiskDecomposition:
    """Each factor's and the specific share of the model variance, the model volatility and
    its coverage, and the `top` positions by Euler contribution."""
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day, "top": top, "factors": list(MODEL_FACTORS)}
    rows = fetch(conn, COMPONENTS_SQL, params)
    if not rows:
        raise no_rows("risk decomposition", "portfolio_risk_decomposition", portfolio_id, day)
    positions = fetch(conn, CONTRIBUTIONS_SQL, params)
    first = rows[0]
    components = [
        RiskComponent.model_validate(
            {**r, "kind": "specific" if r["component"] == SPECIFIC else "factor"}
        )
        for r in rows
    ]
    return RiskDecomposition(
        portfolio_id=portfolio_id,
        as_of=day,
        total_vol_usd=first["total_vol_usd"],
        coverage_fraction=first["coverage_fraction"],
        components=components,
        position_count=positions[0]["position_count"] if positions else 0,
        top=top,
        positions=[PositionRiskContribution.model_validate(p) for p in positions],
    )
