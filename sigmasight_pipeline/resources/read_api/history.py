"""Portfolio history: the position events and equity changes dated in a range, with totals.

Events and equity changes are what the user loaded (`load_portfolio`, `sigmasight equity
add`), not something the pipeline computes per day: a range with none gives empty lists and
zero totals, not an error. Both are listed oldest first (by date, then in the order recorded),
the order in which they apply.
"""

from __future__ import annotations

from datetime import date

import psycopg

from sigmasight_pipeline.resources.read_api.common import SCHEMA, fetch
from sigmasight_pipeline.resources.read_api.history_models import (
    EquityChange,
    HistoryTotals,
    PortfolioHistory,
    PositionEvent,
)

_S = SCHEMA

EVENTS_SQL = f"""
SELECT e.id AS event_id, e.event_date, e.kind, e.position_id, p.symbol, p.position_type,
       e.quantity_change, p.multiplier, e.price AS price_usd, e.price_source,
       e.quantity_change * e.price * p.multiplier AS trade_value_usd, e.realized_pnl_usd,
       e.load_id
FROM {_S}.position_events e
JOIN {_S}.positions p ON p.id = e.position_id
WHERE e.portfolio_id = %(pid)s AND e.event_date BETWEEN %(start)s AND %(end)s
ORDER BY e.event_date, e.id
"""

EQUITY_CHANGES_SQL = f"""
SELECT id AS equity_change_id, change_date, kind, amount_usd, note
FROM {_S}.equity_changes
WHERE portfolio_id = %(pid)s AND change_date BETWEEN %(start)s AND %(end)s
ORDER BY change_date, id
"""


def history_totals(events: list[PositionEvent], changes: list[EquityChange]) -> HistoryTotals:
    """Realized P&L, flows (contributions, withdrawals, net) and event counts by kind."""
    contributions = float(sum(c.amount_usd for c in changes if c.amount_usd > 0))
    withdrawals = float(sum(c.amount_usd for c in changes if c.amount_usd < 0))
    kinds = [e.kind for e in events]
    return HistoryTotals(
        realized_pnl_usd=float(sum(e.realized_pnl_usd or 0.0 for e in events)),
        net_flows_usd=contributions + withdrawals,
        contributions_usd=contributions,
        withdrawals_usd=withdrawals,
        opens=kinds.count("open"),
        increases=kinds.count("increase"),
        decreases=kinds.count("decrease"),
        closes=kinds.count("close"),
        equity_change_count=len(changes),
    )


def history(
    conn: psycopg.Connection, portfolio_id: int, start: date | None, end: date | None
) -> PortfolioHistory:
    """Events and equity changes dated in [start, end] (either bound open), oldest first, with
    their totals; ValueError when start is after end."""
    if start is not None and end is not None and start > end:
        raise ValueError(f"from ({start}) is after to ({end})")
    params = {"pid": portfolio_id, "start": start or date.min, "end": end or date.max}
    events = [PositionEvent.model_validate(r) for r in fetch(conn, EVENTS_SQL, params)]
    changes = [EquityChange.model_validate(r) for r in fetch(conn, EQUITY_CHANGES_SQL, params)]
    return PortfolioHistory(
        portfolio_id=portfolio_id,
        from_date=start,
        to_date=end,
        events=events,
        equity_changes=changes,
        totals=history_totals(events, changes),
    )
