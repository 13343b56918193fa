"""Holdings over time: positions' quantities, average cost and realized P&L from their events,
external cash flows per day, and time-weighted returns. Pure pandas/numpy: no SQL, no Dagster.

Events (`sigmasight.position_events`) are the history: a position's quantity on a day is the sum
of its `quantity_change`s dated on or before it, its cost is kept by the average cost method,
and nothing else (not the current `positions.quantity`, `entry_price` or `closed_on`) is read,
so a later re-upload, which only appends events dated on or after its effective session, never
changes what these functions return for an earlier day.

Conventions (the contract the assets rely on):

* **Held days.** A position is held on every session from its first event's date through the
  date of its `close` event, both included; not after. Load events are dated on a session and
  take effect at that session's close: on the close day C the position is held for valuation
  (`quantity_start` > 0, `quantity` 0) and its realized P&L counts on C. An event dated on a
  non-session (an entry date on a weekend) counts as done before the next session opens: that
  session starts with it (`quantity_start`), like `valuation.position_values` does today.
* **Average cost.** An open sets the cost per unit to its price; an increase re-averages it
  ((q x avg + dq x price) / (q + dq)); a decrease or close leaves it unchanged and realizes
  (price - avg) x (-dq) x multiplier. Quantities are signed, so this holds for shorts too.
* **Day P&L** (mark to market, `mark_to_market_pnl`): quantity x close x mult - quantity_start x
  previous close x mult - trade value, where trade value = sum of quantity_change x price x
  mult of the day's events (cash paid; negative when sold). Summed over a position's life it
  equals its total realized P&L once closed.
* **Flows** are external cash only: equity changes (contributions > 0, withdrawals < 0),
  counted at the START of their session. Opening, increasing, decreasing or closing a
  position with the portfolio's own cash is not a flow: it moves value between positions and
  cash, and its P&L is in the day P&L.
* **Time-weighted return** (`time_weighted_returns`): flows at the start of the day, so
  r_d = pnl_d / (E_{d-1} + F_d) and E_d = E_{d-1} + F_d + pnl_d; cumulative = prod(1 + r) - 1.
  A contribution therefore changes the base of the day's return, never the return itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.validation import MAX_NAMED, naive_dates, session_index

__all__ = [
    "DAILY_HOLDINGS_COLUMNS",
    "EVENT_KINDS",
    "EVENT_STATE_COLUMNS",
    "NON_POSITIVE_BASE",
    "NO_EQUITY",
    "NO_PNL",
    "NO_START",
    "PORTFOLIO_RETURN_COLUMNS",
    "REDUCING_KINDS",
    "TWR_COLUMNS",
    "average_cost_after",
    "daily_flows",
    "daily_holdings",
    "event_states",
    "holdings_on",
    "mark_to_market_pnl",
    "opening_events",
    "portfolio_returns",
    "realized_pnl",
    "time_weighted_returns",
]

EVENT_KINDS = ("open", "increase", "decrease", "close")
REDUCING_KINDS = ("decrease", "close")
EVENT_STATE_COLUMNS = [
    "quantity_before", "quantity", "average_cost_before", "average_cost", "realized_pnl_usd",
]  # fmt: skip
DAILY_HOLDINGS_COLUMNS = [
    "position_id", "portfolio_id", "trade_date", "quantity_start", "quantity", "average_cost",
    "cost_basis_usd", "trade_value_usd", "realized_pnl_usd", "realized_pnl_cum_usd",
]  # fmt: skip
TWR_COLUMNS = ["equity_start_usd", "equity_usd", "twr_daily", "twr_cumulative", "twr_reason"]
ZERO_TOLERANCE = 1e-9  # relative: |q| <= 1e-9 x the quantity before is a zero quantity
NON_POSITIVE_BASE = "no return: the equity at the start of the day (after flows) is <= 0"
NO_START = "no return: no starting equity for the portfolio"
NO_PNL = "no return: the day's P&L is unknown"
NO_EQUITY = "no return: the equity is unknown since an earlier day without a P&L"


def _named(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f" (and {len(items) - MAX_NAMED} more)" if len(items) > MAX_NAMED else "")


def _day_numbers(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Dates as integer day numbers (days since 1970-01-01)."""
    return np.asarray(values, dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)


# ---------------------------------------------------------------------------------------------
# One event


def realized_pnl(
    average_cost: np.ndarray | float,
    price: np.ndarray | float,
    quantity_change: np.ndarray | float,
    multiplier: np.ndarray | float,
) -> np.ndarray:
    """P&L realized when a position shrinks by `quantity_change` (signed: negative for a sale
    of a long, positive for a cover of a short) at `price`: (price - avg) x (-dq) x multiplier."""
    price, average_cost = np.asarray(price, float), np.asarray(average_cost, float)
    return (price - average_cost) * -np.asarray(quantity_change, float) * np.asarray(multiplier)


def average_cost_after(
    quantity: np.ndarray | float,
    average_cost: np.ndarray | float,
    quantity_change: np.ndarray | float,
    price: np.ndarray | float,
) -> np.ndarray:
    """Average cost per unit after a change: the price for an open (quantity 0), re-averaged when
    the position grows, unchanged when it shrinks (the average cost method)."""
    q, avg = np.asarray(quantity, float), np.asarray(average_cost, float)
    dq, price = np.asarray(quantity_change, float), np.asarray(price, float)
    after = q + dq
    grows = (q != 0) & (np.sign(after) == np.sign(q)) & (np.abs(after) > np.abs(q))
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = (q * avg + dq * price) / after
    return np.where(q == 0, price, np.where(grows, averaged, avg))


# ---------------------------------------------------------------------------------------------
# Events of many positions


def _event_order(events: pd.DataFrame) -> pd.DataFrame:
    """Events sorted as they apply: by position, date, then id (insertion order)."""
    missing = {"id", "position_id", "event_date", "kind", "quantity_change", "price"} - set(
        events.columns
    )
    if missing:
        raise ValueError(f"events: missing columns {sorted(missing)}")
    out = events.copy()
    out["event_date"] = naive_dates(out["event_date"], "events.event_date")
    bad_kind = ~out["kind"].isin(EVENT_KINDS)
    if bad_kind.any():
        kinds = sorted(map(str, out.loc[bad_kind, "kind"].unique()))
        raise ValueError(f"events: unknown kind(s) {kinds}; expected one of {EVENT_KINDS}")
    return out.sort_values(["position_id", "event_date", "id"], kind="stable").reset_index(
        drop=True
    )


def event_states(events: pd.DataFrame, multipliers: pd.Series) -> pd.DataFrame:
    """Each event with the position's state before and after it, in the order they apply.

    events: id, position_id, event_date, kind, quantity_change, price (per unit).
    multipliers: position_id -> contract multiplier. Adds EVENT_STATE_COLUMNS: quantity_before,
    quantity (after; exactly 0 after a close), average_cost_before (NaN before the open),
    average_cost (after), realized_pnl_usd (decrease and close only; NaN otherwise).

    An inconsistent history raises a ValueError naming the events: a first event that is not
    an `open`, an `open` later on, an event after the close, a decrease that does not shrink
    the position (or flips or empties it), an increase that does not grow it, a close that
    does not bring it to zero.
    """
    out = _event_order(events)
    n = len(out)
    for column in EVENT_STATE_COLUMNS:
        out[column] = np.full(n, np.nan)
    if n == 0:
        return out
    codes, _ = pd.factorize(out["position_id"])
    mult_index = pd.Index(multipliers.index)
    found = mult_index.get_indexer(out["position_id"])
    if (found < 0).any():
        unknown = sorted(map(str, out.loc[found < 0, "position_id"].unique()))
        raise ValueError(f"events: no multiplier for position(s) {_named(unknown)}")
    mult = multipliers.to_numpy(float)[found]
    kind = out["kind"].to_numpy(object)
    dq = out["quantity_change"].to_numpy(float)
    price = out["price"].to_numpy(float)
    reducing = np.isin(kind, REDUCING_KINDS)
    with np.errstate(invalid="ignore"):
        priced = np.isfinite(price) & ((price > 0) | (reducing & (price == 0)))
    valid = np.isfinite(dq) & (dq != 0) & priced
    if not valid.all():
        bad = out.loc[~valid, "id"]
        raise ValueError(
            f"events {_named([str(i) for i in bad])}: quantity_change must be a non-zero "
            "number and price a positive number (0 only when a position is reduced: an "
            "option expired worthless)"
        )
    rank = out.groupby(codes).cumcount().to_numpy()
    q_state = np.zeros(codes.max() + 1)
    avg_state = np.full(codes.max() + 1, np.nan)
    closed = np.zeros(codes.max() + 1, dtype=bool)
    q_before = np.empty(n)
    q_after = np.empty(n)
    avg_before = np.empty(n)
    avg_after = np.empty(n)
    problems: list[str] = []
    for k in range(int(rank.max()) + 1):
        rows = np.flatnonzero(rank == k)
        pos = codes[rows]
        q0, a0, d, p, kd = q_state[pos], avg_state[pos], dq[rows], price[rows], kind[rows]
        q1 = q0 + d
        is_close = kd == "close"
        zero = np.abs(q1) <= ZERO_TOLERANCE * np.maximum(np.abs(q0), 1.0)
        shrinks = (np.sign(q1) == np.sign(q0)) & (np.abs(q1) < np.abs(q0)) & ~zero
        grows = (np.sign(q1) == np.sign(q0)) & (np.abs(q1) > np.abs(q0))
        reason = np.select(
            [
                closed[pos],
                (kd == "open") != (k == 0),
                (kd == "decrease") & ~shrinks,
                (kd == "increase") & ~grows,
                is_close & ~zero,
            ],
            [
                "an event after the position's close",
                "only a position's first event is an open, and it must be one",
                "a decrease must shrink the position without emptying or flipping it",
                "an increase must grow the position",
                "a close must bring the quantity to zero",
            ],
            default="",
        )
        for i in np.flatnonzero(reason != ""):
            row = rows[i]
            problems.append(
                f"event {out.at[row, 'id']} ({kd[i]} of position {out.at[row, 'position_id']} "
                f"on {out.at[row, 'event_date']:%Y-%m-%d}): {reason[i]}"
            )
        q1 = np.where(is_close, 0.0, q1)
        a1 = average_cost_after(q0, a0, d, p)
        q_before[rows], q_after[rows], avg_before[rows], avg_after[rows] = q0, q1, a0, a1
        q_state[pos], avg_state[pos] = q1, a1
        closed[pos] |= is_close
    if problems:
        raise ValueError(f"inconsistent position events: {_named(problems)}")
    out["quantity_before"] = q_before
    out["quantity"] = q_after
    out["average_cost_before"] = avg_before
    out["average_cost"] = avg_after
    out["realized_pnl_usd"] = np.where(reducing, realized_pnl(avg_before, price, dq, mult), np.nan)
    return out


def daily_holdings(
    positions: pd.DataFrame, events: pd.DataFrame, sessions: pd.DatetimeIndex
) -> pd.DataFrame:
    """Every position on every session of `sessions` it is held (see the module's conventions).

    positions: id, portfolio_id, multiplier (other columns are ignored: only the events say
    what was held when). events: id, position_id, event_date, kind, quantity_change, price.
    Returns DAILY_HOLDINGS_COLUMNS, sorted by trade_date then position_id:
    quantity_start (held when the session opened), quantity (after the session's events),
    average_cost (per unit, after the session's events; unchanged by a close), cost_basis_usd
    (quantity x average_cost x multiplier), trade_value_usd (sum of quantity_change x price x
    multiplier of the session's events), realized_pnl_usd (the session's) and
    realized_pnl_cum_usd (since the position opened, through the session).

    A position without events, or events of a position not in `positions`, raise a ValueError.
    """
    days = session_index(sessions)
    if positions["id"].duplicated().any():
        raise ValueError("positions: duplicate ids")
    ids = pd.Index(positions["id"])
    without = ids.difference(pd.Index(events["position_id"].unique()))
    if len(without):
        raise ValueError(
            f"positions without events: {_named([str(i) for i in without])}; every position "
            "has at least its open event"
        )
    states = event_states(events, positions.set_index("id")["multiplier"])
    if states.empty or len(days) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in DAILY_HOLDINGS_COLUMNS})

    position_at = ids.get_indexer(states["position_id"])
    event_day = _day_numbers(states["event_date"])
    # Events sorted by (position, date): one sorted key for searching them all at once.
    shift = np.int64(1) << 32
    event_key = position_at.astype(np.int64) * shift + event_day
    order = np.argsort(event_key, kind="stable")
    event_key = event_key[order]
    states = states.iloc[order].reset_index(drop=True)
    position_at = position_at[order]
    mult = positions["multiplier"].to_numpy(float)[position_at]
    trade = states["quantity_change"].to_numpy(float) * states["price"].to_numpy(float) * mult
    grouped = pd.Series(position_at)
    trade_cum = pd.Series(trade).groupby(grouped).cumsum().to_numpy()
    realized_cum = pd.Series(states["realized_pnl_usd"].fillna(0.0)).groupby(grouped).cumsum()
    realized_cum = realized_cum.to_numpy()

    # Held from the first event's date through the close event's date.
    first = pd.Series(event_day).groupby(position_at).min()
    is_close = states["kind"].eq("close").to_numpy()
    last = pd.Series(event_day[is_close], index=position_at[is_close])
    opened = first.reindex(range(len(ids))).to_numpy()
    closed = last.reindex(range(len(ids))).fillna(np.iinfo(np.int64).max // 2).to_numpy()
    day_numbers = _day_numbers(days)
    start = np.searchsorted(day_numbers, opened, side="left")
    stop = np.searchsorted(day_numbers, closed, side="right")
    counts = np.clip(stop - start, 0, None)
    row_position = np.repeat(np.arange(len(ids)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    row_day = np.repeat(start, counts) + offsets
    if len(row_position) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in DAILY_HOLDINGS_COLUMNS})

    key = row_position.astype(np.int64) * shift + day_numbers[row_day]
    end = np.searchsorted(event_key, key, side="right") - 1  # last event on or before the day
    before = np.searchsorted(event_key, key, side="left") - 1  # last event before the day
    has_before = (before >= 0) & (position_at[np.maximum(before, 0)] == row_position)
    before = np.maximum(before, 0)

    def at_start(values: np.ndarray) -> np.ndarray:
        return np.where(has_before, values[before], 0.0)

    quantity = states["quantity"].to_numpy(float)
    average = states["average_cost"].to_numpy(float)
    row_mult = positions["multiplier"].to_numpy(float)[row_position]
    out = pd.DataFrame(
        {
            "position_id": ids.to_numpy()[row_position],
            "portfolio_id": positions["portfolio_id"].to_numpy()[row_position],
            "trade_date": days[row_day],
            "quantity_start": at_start(quantity),
            "quantity": quantity[end],
            "average_cost": average[end],
            "cost_basis_usd": quantity[end] * average[end] * row_mult,
            "trade_value_usd": trade_cum[end] - at_start(trade_cum),
            "realized_pnl_usd": realized_cum[end] - at_start(realized_cum),
            "realized_pnl_cum_usd": realized_cum[end],
        }
    )
    return out.sort_values(["trade_date", "position_id"], kind="stable").reset_index(drop=True)


def opening_events(positions: pd.DataFrame) -> pd.DataFrame:
    """One `open` event per position: its quantity at its entry price on its entry date (the
    history of positions loaded once and never changed)."""
    return pd.DataFrame(
        {
            "id": np.arange(1, len(positions) + 1),
            "position_id": positions["id"].to_numpy(),
            "event_date": pd.to_datetime(positions["entry_date"], cache=False).to_numpy(),
            "kind": "open",
            "quantity_change": positions["quantity"].to_numpy(float),
            "price": positions["entry_price"].to_numpy(float),
        }
    )


def holdings_on(positions: pd.DataFrame, events: pd.DataFrame, day: object) -> pd.DataFrame:
    """`daily_holdings` of one day: the positions held on `day` (a session), by position_id."""
    return daily_holdings(positions, events, pd.DatetimeIndex([pd.Timestamp(day)]))


def mark_to_market_pnl(
    quantity_start: np.ndarray | pd.Series,
    quantity: np.ndarray | pd.Series,
    previous_price: np.ndarray | pd.Series,
    price: np.ndarray | pd.Series,
    trade_value_usd: np.ndarray | pd.Series,
    multiplier: np.ndarray | pd.Series,
) -> np.ndarray:
    """A position's P&L for the day: quantity x price x mult - quantity_start x previous price x
    mult - trade value. A position that starts the day empty (opened on it) needs no previous
    price: its term is 0 then, not NaN."""
    q0, q1 = np.asarray(quantity_start, float), np.asarray(quantity, float)
    mult = np.asarray(multiplier, float)
    start_value = np.where(q0 == 0, 0.0, q0 * np.asarray(previous_price, float) * mult)
    end_value = np.where(q1 == 0, 0.0, q1 * np.asarray(price, float) * mult)
    return end_value - start_value - np.asarray(trade_value_usd, float)


# ---------------------------------------------------------------------------------------------
# Flows and time-weighted returns


def daily_flows(equity_changes: pd.DataFrame, sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """Net external flows per portfolio and session: portfolio_id, trade_date, flows_usd,
    contributions_usd, withdrawals_usd (<= 0). Only sessions with a flow have a row (others
    are 0). equity_changes: portfolio_id, change_date, amount_usd (signed). Changes dated
    outside [sessions[0], sessions[-1]] belong to other windows and are left out; one dated
    inside on a day that is not in `sessions` raises (flows are dated on sessions)."""
    days = session_index(sessions)
    columns = ["portfolio_id", "trade_date", "flows_usd", "contributions_usd", "withdrawals_usd"]
    if equity_changes.empty or len(days) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    changes = equity_changes.assign(
        trade_date=naive_dates(equity_changes["change_date"], "equity_changes.change_date")
    )
    changes = changes[changes["trade_date"].between(days[0], days[-1])]
    off = ~changes["trade_date"].isin(days)
    if off.any():
        dates = sorted(f"{d:%Y-%m-%d}" for d in changes.loc[off, "trade_date"].unique())
        raise ValueError(f"equity changes dated on days not in sessions: {_named(dates)}")
    amount = changes["amount_usd"].astype(float)
    changes = changes.assign(
        flows_usd=amount,
        contributions_usd=amount.clip(lower=0.0),
        withdrawals_usd=amount.clip(upper=0.0),
    )
    out = changes.groupby(["portfolio_id", "trade_date"], as_index=False)[columns[2:]].sum()
    return out[columns].sort_values(["trade_date", "portfolio_id"]).reset_index(drop=True)


def time_weighted_returns(
    daily: pd.DataFrame,
    start_equity: Mapping[int, float] | pd.Series,
    start_twr_cumulative: Mapping[int, float] | pd.Series | None = None,
) -> pd.DataFrame:
    """Daily and cumulative time-weighted returns, flows at the start of the day.

    daily: portfolio_id, trade_date, pnl_usd (the day's P&L, realized included), flows_usd
    (0 when none). start_equity: portfolio_id -> equity at the end of the day before the first
    row (E_0). start_twr_cumulative: portfolio_id -> cumulative TWR up to that day (default 0),
    to chain a window onto an earlier one. Returns `daily` sorted by (portfolio_id, trade_date)
    with TWR_COLUMNS: equity_start_usd = E_{d-1} + F_d (the capital at work that day),
    equity_usd = E_d = E_{d-1} + F_d + pnl_d, twr_daily = pnl_d / equity_start_usd,
    twr_cumulative = (1 + start) x prod(1 + twr_daily) - 1. A day without a P&L (NaN), or
    whose equity_start_usd is <= 0, or of a portfolio without a start equity, has NaN returns
    and a twr_reason; the cumulative return is NaN from that day on (a chain with a hole has
    no value), and after a day without a P&L so is the equity.
    """
    required = {"portfolio_id", "trade_date", "pnl_usd", "flows_usd"} - set(daily.columns)
    if required:
        raise ValueError(f"daily: missing columns {sorted(required)}")
    out = daily.copy()
    out["trade_date"] = naive_dates(out["trade_date"], "daily.trade_date")
    out = out.sort_values(["portfolio_id", "trade_date"], kind="stable").reset_index(drop=True)
    if out.duplicated(["portfolio_id", "trade_date"]).any():
        raise ValueError("daily: duplicate (portfolio_id, trade_date) rows")
    pnl = out["pnl_usd"].astype(float).to_numpy()
    flows = out["flows_usd"].astype(float).fillna(0.0).to_numpy()
    e0 = out["portfolio_id"].map(pd.Series(start_equity, dtype=float)).to_numpy(float)
    # A portfolio without a start cumulative starts at 0; one whose start is NaN (its chain
    # already has a hole) stays NaN.
    given = {} if start_twr_cumulative is None else start_twr_cumulative
    starts = pd.Series(given, dtype=float)
    cum0 = np.where(
        out["portfolio_id"].isin(starts.index), out["portfolio_id"].map(starts), 0.0
    ).astype(float)
    group = out["portfolio_id"].to_numpy()
    # A day without a P&L or a start, or with no capital at work, breaks the chain from there.
    unknown = np.isnan(pnl) | np.isnan(e0)
    equity_end = e0 + pd.Series(flows + pnl).groupby(group).cumsum().to_numpy()
    equity_end[pd.Series(unknown).groupby(group).cummax().to_numpy()] = np.nan
    equity_start = equity_end - pnl
    with np.errstate(invalid="ignore", divide="ignore"):
        twr = np.where(equity_start > 0, pnl / equity_start, np.nan)
    reason = np.full(len(out), None, dtype=object)
    reason[np.isnan(twr)] = NON_POSITIVE_BASE
    reason[np.isnan(equity_start)] = NO_EQUITY
    reason[np.isnan(pnl)] = NO_PNL
    reason[np.isnan(e0)] = NO_START
    hole = pd.Series(np.isnan(twr)).groupby(group).cummax().to_numpy()
    growth = pd.Series(1.0 + twr).groupby(group).cumprod().to_numpy()
    cumulative = np.where(hole, np.nan, (1.0 + cum0) * growth - 1.0)
    out["equity_start_usd"] = equity_start
    out["equity_usd"] = equity_end
    out["twr_daily"] = twr
    out["twr_cumulative"] = cumulative
    out["twr_reason"] = reason
    return out


PORTFOLIO_RETURN_COLUMNS = [
    "trade_date", "portfolio_id", "pnl_usd", "realized_pnl_usd", "realized_pnl_cum_usd",
    "flows_usd", "gross_value_usd", "equity_start_usd", "equity_usd", "twr_daily",
    "twr_cumulative", "reason",
]  # fmt: skip


def portfolio_returns(
    daily: pd.DataFrame,
    flows: pd.DataFrame,
    realized_events: pd.DataFrame,
    previous: pd.DataFrame,
    starting_equity: Mapping[int, float] | pd.Series,
) -> pd.DataFrame:
    """Each portfolio's P&L, flows, realized P&L, equity and time-weighted return per day.

    daily: trade_date, portfolio_id, pnl_usd, realized_pnl_usd, gross_value_usd (the position
    rows summed). flows: `daily_flows` of the same sessions (a flow on a day without holdings
    still gets a row, with P&L 0). realized_events: portfolio_id, event_date,
    realized_pnl_usd of every decrease and close, for realized_pnl_cum_usd (all the
    portfolio's realized P&L through the day). previous: portfolio_id, equity_usd,
    twr_cumulative of the session before the first day, where stored: the chain goes on from
    it. Otherwise the start equity is `starting_equity` (set by the user) or the gross value of
    the portfolio's first day. Returns PORTFOLIO_RETURN_COLUMNS (`time_weighted_returns`;
    reason: why a return is missing).
    """
    keys = ["portfolio_id", "trade_date"]
    frame = daily.assign(trade_date=naive_dates(daily["trade_date"], "daily.trade_date"))
    moved = flows[[*keys, "flows_usd"]].assign(
        trade_date=naive_dates(flows["trade_date"], "flows.trade_date")
    )
    frame = frame.merge(moved, on=keys, how="outer", indicator=True)
    held = frame.pop("_merge").ne("right_only").where(lambda h: ~h)  # NaN where held
    frame["flows_usd"] = frame["flows_usd"].fillna(0.0)
    # A day with a flow but no holdings: nothing held, nothing gained.
    frame[["realized_pnl_usd", "gross_value_usd"]] = frame[
        ["realized_pnl_usd", "gross_value_usd"]
    ].fillna(0.0)
    frame["pnl_usd"] = frame["pnl_usd"].where(frame["pnl_usd"].notna() | held.isna(), 0.0)
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)

    realized = realized_events.dropna(subset=["realized_pnl_usd"])
    realized = realized.assign(
        event_date=naive_dates(realized["event_date"], "realized_events.event_date")
    ).sort_values("event_date")
    realized = realized.assign(
        realized_pnl_cum_usd=realized.groupby("portfolio_id")["realized_pnl_usd"].cumsum()
    )
    cumulative = pd.merge_asof(
        frame[keys].sort_values("trade_date"),
        realized[["portfolio_id", "event_date", "realized_pnl_cum_usd"]],
        left_on="trade_date",
        right_on="event_date",
        by="portfolio_id",
    ).set_index(keys)["realized_pnl_cum_usd"]
    frame["realized_pnl_cum_usd"] = (
        cumulative.reindex(pd.MultiIndex.from_frame(frame[keys])).fillna(0.0).to_numpy()
    )

    chained = previous.set_index("portfolio_id") if len(previous) else None
    first_gross = frame.groupby("portfolio_id")["gross_value_usd"].first()
    start = pd.Series(starting_equity, dtype=float).reindex(first_gross.index)
    start = start.fillna(first_gross.where(first_gross > 0))
    start_cumulative = {}
    if chained is not None:
        has_previous = start.index.intersection(chained.index)
        start.loc[has_previous] = chained.loc[has_previous, "equity_usd"].astype(float)
        start_cumulative = chained.loc[has_previous, "twr_cumulative"].astype(float)
    out = time_weighted_returns(frame, start, start_cumulative)
    out = out.rename(columns={"twr_reason": "reason"})
    return out[PORTFOLIO_RETURN_COLUMNS]
