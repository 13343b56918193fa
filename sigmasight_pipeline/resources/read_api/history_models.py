"""Response models of the portfolio-history routes (issue 12): position events and equity
changes over a date range, and the expected return to the target prices on a day.

Units as in `models`: money ends in `_usd`, fractions in `_fraction` (0.05 = 5 %).

Expected return to a target, sign-aware
    For a position held at the day's close (quantity q != 0) at price P (per unit: a share, or
    an option's premium per share), with target price T (same unit):
    `expected_return_to_target_fraction` = (T / P - 1) x sign(q). A long gains when the price
    rises to T, a short when it falls to T: positive is a gain, negative a loss, for either.
    The dollar P&L to the target is `pnl_to_target_usd` = (T - P) x q x multiplier
    (= |exposure| x the expected return). The downside price D gives the same two numbers with
    D for T (usually negative: the loss if the price goes to D).
    The portfolio's exposure-weighted expected return is sum(|exposure_i| x r_i) / sum
    |exposure_i| over the priced positions held with a target (= their summed P&L to target
    over their gross exposure); positions without a target are counted, not weighted in.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from sigmasight_pipeline.resources.read_api.models import (
    EXPECTED_RETURN_TO_DOWNSIDE,
    EXPECTED_RETURN_TO_TARGET,
    PositionType,
)

__all__ = [
    "EVENT_KINDS",
    "EquityChange",
    "EventKind",
    "HistoryTotals",
    "PortfolioHistory",
    "PortfolioTargets",
    "PositionEvent",
    "PositionTarget",
    "TargetSummary",
]

EventKind = Literal["open", "increase", "decrease", "close"]
EVENT_KINDS: tuple[str, ...] = ("open", "increase", "decrease", "close")

# ---------------------------------------------------------------------------------------------
# History: events and flows


class PositionEvent(BaseModel):
    """One change of a position's quantity, as recorded by a portfolio load."""

    event_id: int = Field(description="event id (increasing in the order recorded)")
    event_date: date = Field(description="the session the change is dated (at its close)")
    kind: EventKind = Field(description="open, increase, decrease or close")
    position_id: int = Field(description="position id")
    symbol: str = Field(description="ticker, or OCC symbol for an option")
    position_type: PositionType = Field(description="LONG, SHORT, LC, LP, SC or SP")
    quantity_change: float = Field(
        description="signed change of shares / contracts (a sale of a long < 0, a cover of a "
        "short > 0)"
    )
    multiplier: int = Field(description="shares per unit: 1 for stocks, 100 for options")
    price_usd: float = Field(description="price per unit the change was made at")
    price_source: str = Field(
        description="file (the file's entry price), close:<source> (that session's close) or "
        "expiry:<underlying> close:<source> (an expired option at its intrinsic value)"
    )
    trade_value_usd: float = Field(
        description="quantity_change x price_usd x multiplier: cash paid (< 0: received)"
    )
    realized_pnl_usd: float | None = Field(
        description="(price - average cost before) x (-quantity_change) x multiplier for a "
        "decrease or close; null for an open or increase"
    )
    load_id: int | None = Field(
        description="the portfolio load (portfolio_loads) that recorded it; null when unknown"
    )


class EquityChange(BaseModel):
    """An external cash flow: a contribution (> 0) or a withdrawal (< 0)."""

    equity_change_id: int = Field(description="equity change id")
    change_date: date = Field(description="the session it counts at (at its start)")
    kind: Literal["contribution", "withdrawal"] = Field(description="contribution or withdrawal")
    amount_usd: float = Field(description="signed amount: > 0 contribution, < 0 withdrawal")
    note: str | None = Field(description="the note given when it was recorded")


class HistoryTotals(BaseModel):
    """Sums over the events and equity changes of the range."""

    realized_pnl_usd: float = Field(
        description="sum of the events' realized P&L (decreases and closes)"
    )
    net_flows_usd: float = Field(description="contributions_usd + withdrawals_usd")
    contributions_usd: float = Field(description="sum of the contributions (>= 0)")
    withdrawals_usd: float = Field(description="sum of the withdrawals (<= 0)")
    opens: int = Field(description="open events")
    increases: int = Field(description="increase events")
    decreases: int = Field(description="decrease events")
    closes: int = Field(description="close events")
    equity_change_count: int = Field(description="equity changes")


class PortfolioHistory(BaseModel):
    """A portfolio's position events and equity changes dated in [from_date, to_date]
    (null bounds: from the first / to the last), in chronological order (by date, then in the
    order recorded), with their totals."""

    portfolio_id: int = Field(description="portfolio id")
    from_date: date | None = Field(description="first day asked (null: from the first)")
    to_date: date | None = Field(description="last day asked (null: to the last)")
    events: list[PositionEvent] = Field(description="position events, oldest first")
    equity_changes: list[EquityChange] = Field(description="equity changes, oldest first")
    totals: HistoryTotals = Field(description="sums over the range")


# ---------------------------------------------------------------------------------------------
# Targets


class PositionTarget(BaseModel):
    """A position held at the day's close with a target price (see the module docstring)."""

    position_id: int = Field(description="position id")
    symbol: str = Field(description="ticker, or OCC symbol for an option")
    position_type: PositionType = Field(description="LONG, SHORT, LC, LP, SC or SP")
    quantity: float = Field(description="signed shares or contracts on the day")
    multiplier: int = Field(description="1 for stocks, 100 for options")
    price_usd: float | None = Field(description="price per unit on the day; null when unpriced")
    price_source: str = Field(description="market, carried_forward or missing")
    exposure_usd: float | None = Field(description="quantity x price x multiplier (signed)")
    target_price_usd: float = Field(description="target price per unit (the unit of price_usd)")
    downside_price_usd: float | None = Field(description="downside price per unit, if set")
    target_set_on: date = Field(description="session the target applies from")
    expected_return_to_target_fraction: float | None = Field(description=EXPECTED_RETURN_TO_TARGET)
    expected_return_to_downside_fraction: float | None = Field(
        description=EXPECTED_RETURN_TO_DOWNSIDE
    )
    pnl_to_target_usd: float | None = Field(
        description="(target_price_usd - price_usd) x quantity x multiplier, USD"
    )
    pnl_to_downside_usd: float | None = Field(
        description="(downside_price_usd - price_usd) x quantity x multiplier, USD"
    )


class TargetSummary(BaseModel):
    """The portfolio's exposure-weighted expected returns and what they cover."""

    positions_held: int = Field(description="positions held at the day's close (quantity != 0)")
    positions_with_target: int = Field(description="held positions with a target price")
    positions_without_target: int = Field(description="held positions without a target price")
    position_ids_without_target: list[int] = Field(description="those positions, by id")
    unpriced_with_target: int = Field(
        description="positions with a target but no price on the day (not weighted in)"
    )
    gross_exposure_with_target_usd: float = Field(
        description="sum of |exposure| of the priced positions with a target: the weights' total"
    )
    expected_return_to_target_fraction: float | None = Field(
        description="sum(|exposure| x expected return to target) / sum(|exposure|) over the "
        "priced positions with a target (= pnl_to_target_usd / gross_exposure_with_target_usd); "
        "null when there are none"
    )
    pnl_to_target_usd: float = Field(description="sum of the positions' P&L to their targets")
    positions_with_downside: int = Field(
        description="priced positions with a downside price (the downside return's weights)"
    )
    gross_exposure_with_downside_usd: float = Field(
        description="sum of |exposure| of the priced positions with a downside price"
    )
    expected_return_to_downside_fraction: float | None = Field(
        description="sum(|exposure| x expected return to downside) / sum(|exposure|) over the "
        "priced positions with a downside price; null when there are none"
    )
    pnl_to_downside_usd: float = Field(
        description="sum of the positions' P&L to their downside prices"
    )


class PortfolioTargets(BaseModel):
    """Positions held on the day with a target price (the latest set on or before it), and the
    portfolio's exposure-weighted expected return; an empty list when none has a target."""

    portfolio_id: int = Field(description="portfolio id")
    as_of: date = Field(description="the trading day reported")
    summary: TargetSummary = Field(description="portfolio-level expected returns and counts")
    positions: list[PositionTarget] = Field(
        description="positions with a target, by expected return to target (highest first, "
        "unpriced last), then symbol"
    )
