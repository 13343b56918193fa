"""Stress tests on a day: every scenario's P&L with its worst positions, and rate sensitivity."""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import (
    SCHEMA,
    fetch,
    no_rows,
    rate_sensitivity,
    trading_day,
)
from sigmasight_pipeline.resources.read_api.depth_models import (
    StressPosition,
    StressResults,
    StressScenarioResult,
)

_S = SCHEMA
WORST_POSITIONS = 3

# Scenarios in the library's order; a result whose scenario has left the library since it was
# computed comes last, without a name.
STRESS_SQL = f"""
SELECT r.scenario_id, s.name, s.kind, s.description, s.start_date, s.end_date, r.pnl_usd,
       r.pnl_usd_delta_gamma, r.pnl_pct_of_gross AS pnl_fraction_of_gross,
       r.gross_exposure_usd, r.method, r.n_positions, r.n_missing, r.reason
FROM {_S}.portfolio_stress_results r
LEFT JOIN {_S}.stress_scenarios s USING (scenario_id)
WHERE r.portfolio_id = %(pid)s AND r.trade_date = %(day)s
ORDER BY s.ordinal NULLS LAST, r.scenario_id
"""

# The `worst` positions with the lowest P&L per scenario (positions without one left out).
WORST_POSITIONS_SQL = f"""
SELECT scenario_id, position_id, symbol, position_type, underlying, pnl_usd, pnl_usd_delta_gamma
FROM (
    SELECT r.scenario_id, r.position_id, p.symbol, p.position_type, p.underlying, r.pnl_usd,
           r.pnl_usd_delta_gamma,
           row_number() OVER (PARTITION BY r.scenario_id
                              ORDER BY r.pnl_usd, r.position_id) AS rank
    FROM {_S}.position_stress_results r
    JOIN {_S}.positions p ON p.id = r.position_id
    WHERE r.portfolio_id = %(pid)s AND r.trade_date = %(day)s AND r.pnl_usd IS NOT NULL
      AND r.pnl_usd <> 'NaN'
) ranked
WHERE rank <= %(worst)s
ORDER BY scenario_id, rank
"""


def stress_results(
    conn: psycopg.Connection,
    portfolio_id: int,
    as_of: date | None = None,
    worst: int = WORST_POSITIONS,
) -> StressResults:
    """Every scenario's P&L (options fully revalued, the delta-gamma estimate beside it) with
    its `worst` positions, and the portfolio's rate beta and linear P&L per +100 bp."""
    if worst < 1:
        raise ValueError(f"worst must be at least 1, not {worst}")
    day = trading_day(conn, portfolio_id, as_of)
    params = {"pid": portfolio_id, "day": day, "worst": worst}
    rows = fetch(conn, STRESS_SQL, params)
    if not rows:
        raise no_rows("stress results", "portfolio_stress_results", portfolio_id, day)
    by_scenario: dict[str, list[StressPosition]] = {}
    for row in fetch(conn, WORST_POSITIONS_SQL, params):
        by_scenario.setdefault(row.pop("scenario_id"), []).append(
            StressPosition.model_validate(row)
        )
    scenarios = [
        StressScenarioResult(**r, worst_positions=by_scenario.get(r["scenario_id"], []))
        for r in rows
    ]
    return StressResults(
        portfolio_id=portfolio_id,
        as_of=day,
        scenarios=scenarios,
        **rate_sensitivity(conn, portfolio_id, day),
    )
