"""What a person sets on a portfolio besides its positions: external cash flows (equity changes)
and target prices. `sigmasight equity add`, `sigmasight targets set` and the portfolio CSV's
target_price / downside_price columns write through here.

Equity changes are dated on a session and count at its start (`analytics.holdings`). A
withdrawal larger than the portfolio's equity on its date is refused; that equity is
(`portfolio_equity`), from the latest snapshot on or before the date:

1. the snapshot's `equity_usd` (once snapshots carry it) + the net flows dated after the
   snapshot and on or before the date;
2. else the snapshot's `total_value` (gross market value: the starting equity plus the P&L,
   as far as the pipeline knows it) + the net flows dated on or before the date;
3. with no snapshot, the gross value at cost of the holdings at the end of the date
   (sum of |quantity| x average cost x multiplier, from the events) + the net flows dated on
   or before the date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics.holdings import holdings_on
from sigmasight_pipeline.analytics.instruments import normalize_symbols
from sigmasight_pipeline.holdings import SessionError, portfolio_history, require_session

__all__ = [
    "Equity",
    "EquityChange",
    "InputError",
    "TargetPrice",
    "add_equity_change",
    "find_portfolio",
    "portfolio_equity",
    "set_target",
    "set_target_prices",
]


class InputError(ValueError):
    """A refused equity change or target price; the message says why."""


@dataclass(frozen=True)
class Equity:
    """A portfolio's equity on a day and how it was measured (`basis`, for people)."""

    amount_usd: float
    basis: str


@dataclass(frozen=True)
class EquityChange:
    """A recorded contribution (amount > 0) or withdrawal (< 0), and the equity it was checked
    against (a withdrawal) or added to (a contribution)."""

    id: int
    portfolio_id: int
    change_date: date
    amount_usd: float
    kind: str
    note: str | None
    equity_before: Equity


@dataclass(frozen=True)
class TargetPrice:
    position_id: int
    symbol: str
    target_price: float
    downside_price: float | None
    set_on: date


def find_portfolio(conn: psycopg.Connection, username: str, portfolio: str) -> int:
    """The id of `username`'s portfolio `portfolio`; InputError naming what is missing."""
    row = conn.execute(
        "SELECT u.id, p.id FROM sigmasight.users u LEFT JOIN sigmasight.portfolios p "
        "ON p.owner_id = u.id AND p.name = %s WHERE u.username = %s",
        (portfolio.strip(), username),
    ).fetchone()
    if row is None:
        raise InputError(f"unknown user {username!r}")
    if row[1] is None:
        raise InputError(f"{username!r} has no portfolio named {portfolio.strip()!r}")
    return int(row[1])


def _session(day: date | str, what: str) -> date:
    try:
        return require_session(day, what)
    except SessionError as exc:
        raise InputError(str(exc)) from exc


def _first_event_date(conn: psycopg.Connection, portfolio_id: int) -> date | None:
    row = conn.execute(
        "SELECT min(event_date) FROM sigmasight.position_events WHERE portfolio_id = %s",
        (portfolio_id,),
    ).fetchone()
    return None if row is None else row[0]


def _money(value: float) -> str:
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


# ---------------------------------------------------------------------------------------------
# Equity


def _net_flows(conn: psycopg.Connection, portfolio_id: int, after: date | None, day: date) -> float:
    row = conn.execute(
        "SELECT coalesce(sum(amount_usd), 0) FROM sigmasight.equity_changes "
        "WHERE portfolio_id = %s AND change_date <= %s "
        "AND (%s::date IS NULL OR change_date > %s::date)",
        (portfolio_id, day, after, after),
    ).fetchone()
    return float(row[0])


def portfolio_equity(conn: psycopg.Connection, portfolio_id: int, day: date) -> Equity:
    """The portfolio's equity at the end of `day` as the module docstring defines it."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM sigmasight.portfolio_snapshots WHERE portfolio_id = %s "
            "AND trade_date <= %s ORDER BY trade_date DESC LIMIT 1",
            (portfolio_id, day),
        )
        found = cursor.fetchone()
        names = [d.name for d in cursor.description] if cursor.description else []
    snapshot = dict(zip(names, found, strict=True)) if found else None
    if snapshot is not None and snapshot.get("equity_usd") is not None:
        base, when = float(snapshot["equity_usd"]), snapshot["trade_date"]
        flows = _net_flows(conn, portfolio_id, when, day)
        basis = f"equity_usd {_money(base)} of the {when} snapshot + net flows {_money(flows)} "
        return Equity(base + flows, basis + f"after it to {day}")
    flows = _net_flows(conn, portfolio_id, None, day)
    if snapshot is not None:
        base, when = float(snapshot["total_value"]), snapshot["trade_date"]
        basis = f"total_value (gross market value) {_money(base)} of the {when} snapshot"
    else:
        positions, events = portfolio_history(conn, portfolio_id)
        held = holdings_on(positions, events, pd.Timestamp(day)) if len(positions) else None
        base = 0.0 if held is None else float(held["cost_basis_usd"].abs().sum())
        basis = f"no snapshot: gross value at cost {_money(base)} of the holdings on {day}"
    return Equity(base + flows, f"{basis} + net flows {_money(flows)} to {day}")


def add_equity_change(
    conn: psycopg.Connection,
    username: str,
    portfolio: str,
    amount_usd: float,
    change_date: date | str,
    note: str | None = None,
    today: date | None = None,
) -> EquityChange:
    """Record a contribution (amount > 0) or withdrawal (< 0) at the start of session
    `change_date`, in one transaction; InputError (nothing recorded) for an amount of 0 or not
    a number, a date that is not a session, in the future or before the portfolio's first
    session, or a withdrawal larger than the equity (`portfolio_equity`) on that date."""
    if not math.isfinite(amount_usd) or amount_usd == 0:
        raise InputError(f"amount {amount_usd} must be a non-zero number of dollars")
    day = _session(change_date, "--date")
    today = today or date.today()
    if day > today:
        raise InputError(f"--date {day} is in the future (today is {today})")
    kind = "contribution" if amount_usd > 0 else "withdrawal"
    with conn.transaction():
        portfolio_id = find_portfolio(conn, username, portfolio)
        conn.execute(
            "SELECT id FROM sigmasight.portfolios WHERE id = %s FOR UPDATE", (portfolio_id,)
        )
        first = _first_event_date(conn, portfolio_id)
        if first is None or day < first:
            raise InputError(
                f"--date {day} is before the portfolio's first position"
                + (f" (held from {first})" if first else " (it holds nothing)")
            )
        equity = portfolio_equity(conn, portfolio_id, day)
        if amount_usd < 0 and -amount_usd > equity.amount_usd:
            raise InputError(
                f"a withdrawal of {_money(-amount_usd)} on {day} is larger than the "
                f"portfolio's equity of {_money(equity.amount_usd)} on that date "
                f"({equity.basis}); nothing was recorded"
            )
        row = conn.execute(
            "INSERT INTO sigmasight.equity_changes (portfolio_id, change_date, amount_usd, "
            "kind, note) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (portfolio_id, day, amount_usd, kind, note),
        ).fetchone()
    assert row is not None
    return EquityChange(int(row[0]), portfolio_id, day, amount_usd, kind, note, equity)


def set_starting_equity(
    conn: psycopg.Connection, username: str, portfolio: str, amount_usd: float
) -> int:
    """Set the equity the portfolio's returns start from (the end of the day before its first
    return) instead of its first day's gross value; InputError for an amount that is not a
    positive number. Returns the portfolio id. The next backfill's first row uses it."""
    if not math.isfinite(amount_usd) or amount_usd <= 0:
        raise InputError(f"starting equity {amount_usd} must be a positive number of dollars")
    with conn.transaction():
        portfolio_id = find_portfolio(conn, username, portfolio)
        conn.execute(
            "UPDATE sigmasight.portfolios SET starting_equity_usd = %s WHERE id = %s",
            (amount_usd, portfolio_id),
        )
    return portfolio_id


# ---------------------------------------------------------------------------------------------
# Target prices


def set_target_prices(
    conn: psycopg.Connection,
    position_ids: list[int],
    targets: list[float],
    downsides: list[float | None],
    set_on: date,
) -> int:
    """Set positions' target (and downside; None or NaN: none) prices from session `set_on`,
    unless the same values already apply then; one set on the same session is replaced.
    Returns how many were written."""
    downs = [None if d is None or (isinstance(d, float) and np.isnan(d)) else d for d in downsides]
    rows = conn.execute(
        """
        WITH given AS (
            SELECT * FROM unnest(%(ids)s::int[], %(targets)s::float8[], %(downs)s::float8[])
                AS g(position_id, target_price, downside_price)
        ), current AS (
            SELECT DISTINCT ON (t.position_id) t.position_id, t.target_price, t.downside_price
            FROM sigmasight.target_prices t JOIN given g ON g.position_id = t.position_id
            WHERE t.set_on <= %(day)s ORDER BY t.position_id, t.set_on DESC
        )
        INSERT INTO sigmasight.target_prices (position_id, target_price, downside_price, set_on)
        SELECT g.position_id, g.target_price, g.downside_price, %(day)s FROM given g
        LEFT JOIN current c ON c.position_id = g.position_id
        WHERE c.position_id IS NULL OR c.target_price IS DISTINCT FROM g.target_price
           OR c.downside_price IS DISTINCT FROM g.downside_price
        ON CONFLICT (position_id, set_on) DO UPDATE
            SET target_price = EXCLUDED.target_price, downside_price = EXCLUDED.downside_price,
                created_at = now()
        RETURNING position_id
        """,
        {"ids": position_ids, "targets": targets, "downs": downs, "day": set_on},
    ).fetchall()
    return len(rows)


def set_target(
    conn: psycopg.Connection,
    username: str,
    portfolio: str,
    symbol: str,
    target_price: float,
    downside_price: float | None = None,
    set_on: date | str | None = None,
) -> TargetPrice:
    """Set the target (and downside) price of the portfolio's open position in `symbol`, from
    session `set_on` (default: the latest closed session); InputError if a price is not
    positive, the date is not a session or no open position has that symbol."""
    for name, value in (("--target", target_price), ("--downside", downside_price)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"{name} {value} must be a positive price")
    day = calendar.latest_closed_session().date() if set_on is None else _session(set_on, "--as-of")
    normalized = str(normalize_symbols(pd.Series([symbol])).iloc[0])
    with conn.transaction():
        portfolio_id = find_portfolio(conn, username, portfolio)
        row = conn.execute(
            "SELECT id FROM sigmasight.positions WHERE portfolio_id = %s AND symbol = %s "
            "AND closed_on IS NULL",
            (portfolio_id, normalized),
        ).fetchone()
        if row is None:
            raise InputError(f"{username} / {portfolio.strip()} holds no open {normalized}")
        set_target_prices(conn, [int(row[0])], [target_price], [downside_price], day)
    return TargetPrice(int(row[0]), normalized, target_price, downside_price, day)
