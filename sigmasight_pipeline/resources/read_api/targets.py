"""Target prices on a day: each position's latest target (set on or before the day), its
sign-aware expected return to the target and downside, and the portfolio's exposure-weighted
expected return (definitions in `history_models`).

The SQL pieces here (`LATEST_TARGET_JOIN`, `TARGET_COLUMNS`) are shared with `positions`, so
/positions and /portfolio/targets compute the same numbers; they expect the day's
`position_values` row as `v`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch, trading_day
from sigmasight_pipeline.resources.read_api.history_models import (
    PortfolioTargets,
    PositionTarget,
    TargetSummary,
)

_S = SCHEMA

# The latest target of the position `v` set on or before its day (a primary-key range scan).
LATEST_TARGET_JOIN = f"""
LEFT JOIN LATERAL (
    SELECT t.target_price, t.downside_price, t.set_on
    FROM {_S}.target_prices t
    WHERE t.position_id = v.position_id AND t.set_on <= v.trade_date
    ORDER BY t.set_on DESC
    LIMIT 1
) tp ON true"""


def _expected_return(price: str) -> str:
    """(price / the day's price - 1) x sign(quantity); NULL when closed, unpriced or no price."""
    return (
        f"CASE WHEN v.quantity <> 0 AND v.price > 0 "
        f"THEN ({price} / v.price - 1) * sign(v.quantity) END"
    )


def _pnl_to(price: str) -> str:
    """(price - the day's price) x quantity x multiplier; NULL when unpriced or no price."""
    return f"CASE WHEN v.price > 0 THEN ({price} - v.price) * v.quantity * p.multiplier END"


TARGET_COLUMNS = f"""tp.target_price AS target_price_usd, tp.downside_price AS downside_price_usd,
       tp.set_on AS target_set_on,
       {_expected_return("tp.target_price")} AS expected_return_to_target_fraction,
       {_expected_return("tp.downside_price")} AS expected_return_to_downside_fraction"""

# Every position held at the day's close (closed-on-the-day rows, quantity 0, are not), with
# its target when it has one.
HELD_TARGETS_SQL = f"""
SELECT v.position_id, p.symbol, p.position_type, v.quantity, p.multiplier,
       v.price AS price_usd, v.price_source, v.exposure AS exposure_usd,
       {TARGET_COLUMNS},
       {_pnl_to("tp.target_price")} AS pnl_to_target_usd,
       {_pnl_to("tp.downside_price")} AS pnl_to_downside_usd
FROM {_S}.position_values v
JOIN {_S}.positions p ON p.id = v.position_id
{LATEST_TARGET_JOIN}
WHERE v.portfolio_id = %(pid)s AND v.trade_date = %(day)s AND v.quantity <> 0
ORDER BY expected_return_to_target_fraction DESC NULLS LAST, p.symbol, v.position_id
"""


def _weighted(rows: Sequence[PositionTarget], field: str) -> tuple[int, float, float | None]:
    """How many rows have `field`, the sum of their |exposure| and the |exposure|-weighted
    mean of `field` over them (None when there are none or their exposure sums to 0)."""
    used = [(abs(r.exposure_usd or 0.0), getattr(r, field)) for r in rows]
    used = [(w, x) for w, x in used if x is not None]
    gross = float(sum(w for w, _ in used))
    mean = float(sum(w * x for w, x in used)) / gross if gross > 0 else None
    return len(used), gross, mean


def target_summary(
    held: int, with_target: Sequence[PositionTarget], without: list[int]
) -> TargetSummary:
    """The portfolio's exposure-weighted expected returns over the positions with a target."""
    n_target, gross_target, to_target = _weighted(with_target, "expected_return_to_target_fraction")
    n_down, gross_down, to_down = _weighted(with_target, "expected_return_to_downside_fraction")
    return TargetSummary(
        positions_held=held,
        positions_with_target=len(with_target),
        positions_without_target=len(without),
        position_ids_without_target=without,
        unpriced_with_target=len(with_target) - n_target,
        gross_exposure_with_target_usd=gross_target,
        expected_return_to_target_fraction=to_target,
        pnl_to_target_usd=float(sum(r.pnl_to_target_usd or 0.0 for r in with_target)),
        positions_with_downside=n_down,
        gross_exposure_with_downside_usd=gross_down,
        expected_return_to_downside_fraction=to_down,
        pnl_to_downside_usd=float(sum(r.pnl_to_downside_usd or 0.0 for r in with_target)),
    )


def targets(conn: psycopg.Connection, portfolio_id: int, as_of: date | None) -> PortfolioTargets:
    """The positions held on the day with a target, and the portfolio's expected returns; an
    empty list (and the count of positions without one) when no position has a target."""
    day = trading_day(conn, portfolio_id, as_of)
    rows = fetch(conn, HELD_TARGETS_SQL, {"pid": portfolio_id, "day": day})
    with_target = [
        PositionTarget.model_validate(r) for r in rows if r["target_price_usd"] is not None
    ]
    without = sorted(r["position_id"] for r in rows if r["target_price_usd"] is None)
    return PortfolioTargets(
        portfolio_id=portfolio_id,
        as_of=day,
        summary=target_summary(len(rows), with_target, without),
        positions=with_target,
    )
