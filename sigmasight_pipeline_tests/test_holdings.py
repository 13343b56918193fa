"""Holdings over time (analytics/holdings.py): average cost, realized P&L, held days, flows and
time-weighted returns, checked against hand computations and cash accounting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmasight_pipeline.analytics.holdings import (
    DAILY_HOLDINGS_COLUMNS,
    NO_EQUITY,
    NO_PNL,
    NON_POSITIVE_BASE,
    average_cost_after,
    daily_flows,
    daily_holdings,
    event_states,
    holdings_on,
    mark_to_market_pnl,
    realized_pnl,
    time_weighted_returns,
)

# Mon 2026-11-02 .. Fri 2026-11-13: ten sessions, no holiday.
SESSIONS = pd.bdate_range("2026-11-02", "2026-11-13")
D = {i + 1: day for i, day in enumerate(SESSIONS)}  # D[1] = first session


def events_of(*rows: tuple) -> pd.DataFrame:
    """(position_id, day, kind, quantity_change, price) -> an events frame with ids in order."""
    frame = pd.DataFrame(
        rows, columns=["position_id", "event_date", "kind", "quantity_change", "price"]
    )
    return frame.assign(id=np.arange(1, len(frame) + 1))


def positions_of(*rows: tuple) -> pd.DataFrame:
    """(id, portfolio_id, multiplier) -> a positions frame."""
    return pd.DataFrame(rows, columns=["id", "portfolio_id", "multiplier"])


# ---------------------------------------------------------------------------------------------
# One position's events


def test_average_cost_and_realized_pnl_by_hand() -> None:
    events = events_of(
        (1, D[1], "open", 100, 10.0),
        (1, D[2], "increase", 50, 13.0),  # avg (100 x 10 + 50 x 13) / 150 = 11
        (1, D[3], "decrease", -30, 12.0),  # realized (12 - 11) x 30 = 30; avg stays 11
        (1, D[4], "close", -120, 9.0),  # realized (9 - 11) x 120 = -240
        (2, D[1], "open", -100, 50.0),  # a short
        (2, D[2], "decrease", 40, 45.0),  # covered 40 at 45: (45 - 50) x -40 = +200
        (3, D[1], "open", 2, 5.5),  # 2 option contracts, multiplier 100
        (3, D[2], "close", -2, 7.0),  # (7 - 5.5) x 2 x 100 = 300
    )
    states = event_states(events, pd.Series({1: 1, 2: 1, 3: 100}))
    by_id = states.set_index("id")
    assert by_id["quantity"].tolist() == [100, 150, 120, 0, -100, -60, 2, 0]
    assert by_id["average_cost"].tolist() == pytest.approx([10, 11, 11, 11, 50, 50, 5.5, 5.5])
    realized = by_id["realized_pnl_usd"]
    assert realized.isna().tolist() == [True, True, False, False, True, False, True, False]
    assert realized.dropna().tolist() == pytest.approx([30, -240, 200, 300])


def test_helpers_on_scalars() -> None:
    assert realized_pnl(11.0, 12.0, -30, 1) == pytest.approx(30)
    assert realized_pnl(50.0, 45.0, 40, 1) == pytest.approx(200)
    assert average_cost_after(0, np.nan, 100, 10.0) == 10.0  # an open
    assert average_cost_after(100, 10.0, 50, 13.0) == pytest.approx(11.0)
    assert average_cost_after(-100, 50.0, -100, 40.0) == pytest.approx(45.0)  # short grows
    assert average_cost_after(100, 10.0, -40, 99.0) == 10.0  # a sale keeps the cost


@settings(max_examples=200, deadline=None)
@given(
    sign=st.sampled_from([1.0, -1.0]),
    multiplier=st.sampled_from([1, 100]),
    steps=st.lists(
        st.tuples(st.integers(1, 500), st.floats(1.0, 500.0), st.booleans()),
        min_size=1,
        max_size=8,
    ),
    close_price=st.floats(1.0, 500.0),
)
def test_total_realized_equals_cash_pnl(
    sign: float, multiplier: int, steps: list, close_price: float
) -> None:
    """Average cost is an allocation: once a position is closed, the sum of its realized P&L is
    the cash it made, -sum(quantity_change x price x multiplier), whatever the path."""
    rows = []
    quantity = 0.0
    for size, price, buy in steps:
        if quantity == 0 or buy:
            kind = "open" if quantity == 0 else "increase"
            change = sign * size
        else:
            change = -sign * min(size, abs(quantity) - 1)
            if change == 0:
                continue
            kind = "decrease"
        quantity += change
        rows.append((7, D[1], kind, change, price))
    rows.append((7, D[2], "close", -quantity, close_price))
    events = events_of(*rows)
    states = event_states(events, pd.Series({7: multiplier}))
    cash = -(events["quantity_change"] * events["price"]).sum() * multiplier
    assert states["realized_pnl_usd"].sum() == pytest.approx(cash, rel=1e-9, abs=1e-6)


def test_an_option_expired_worthless_closes_at_zero() -> None:
    events = events_of((1, D[1], "open", -2, 3.0), (1, D[2], "close", 2, 0.0))
    states = event_states(events, pd.Series({1: 100}))
    assert states["realized_pnl_usd"].iloc[-1] == pytest.approx(600)  # the premium kept


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(1, D[1], "increase", 10, 1.0)], "first event is an open"),
        ([(1, D[1], "open", 10, 1.0), (1, D[2], "open", 10, 1.0)], "first event is an open"),
        ([(1, D[1], "open", 10, 1.0), (1, D[2], "decrease", -10, 1.0)], "without emptying"),
        ([(1, D[1], "open", 10, 1.0), (1, D[2], "decrease", -15, 1.0)], "flipping"),
        ([(1, D[1], "open", 10, 1.0), (1, D[2], "increase", -5, 1.0)], "must grow"),
        ([(1, D[1], "open", 10, 1.0), (1, D[2], "close", -4, 1.0)], "to zero"),
        (
            [(1, D[1], "open", 10, 1.0), (1, D[2], "close", -10, 1.0), (1, D[3], "increase", 5, 1)],
            "after the position's close",
        ),
        ([(1, D[1], "open", 10, 0.0)], "price a positive number"),
        ([(1, D[1], "open", 10, 1.0), (1, D[2], "increase", 5, 0.0)], "price a positive"),
    ],
)
def test_inconsistent_histories_raise(rows: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event_states(events_of(*rows), pd.Series({1: 1}))


# ---------------------------------------------------------------------------------------------
# Daily holdings


def test_daily_holdings_by_hand() -> None:
    """Opened on D2, grown on D3 at 12, halved on D5 at 14, closed on D7 at 9: held D2..D7."""
    positions = positions_of((1, 10, 1))
    events = events_of(
        (1, D[2], "open", 100, 10.0),
        (1, D[3], "increase", 100, 12.0),  # avg 11
        (1, D[5], "decrease", -100, 14.0),  # realized 300
        (1, D[7], "close", -100, 9.0),  # realized -200
    )
    daily = daily_holdings(positions, events, SESSIONS)
    assert list(daily.columns) == DAILY_HOLDINGS_COLUMNS
    assert daily["trade_date"].tolist() == [D[i] for i in range(2, 8)]
    expected = pd.DataFrame(
        {
            "quantity_start": [0, 100, 200, 200, 100, 100],
            "quantity": [100, 200, 200, 100, 100, 0],
            "average_cost": [10, 11, 11, 11, 11, 11],
            "cost_basis_usd": [1000, 2200, 2200, 1100, 1100, 0],
            "trade_value_usd": [1000, 1200, 0, -1400, 0, -900],
            "realized_pnl_usd": [0, 0, 0, 300, 0, -200],
            "realized_pnl_cum_usd": [0, 0, 0, 300, 300, 100],
        },
        dtype=float,
    )
    pd.testing.assert_frame_equal(daily[expected.columns], expected)
    assert (daily["portfolio_id"] == 10).all() and (daily["position_id"] == 1).all()


def test_an_entry_on_a_weekend_is_held_from_the_next_session() -> None:
    saturday = D[5] + pd.Timedelta(days=1)
    events = events_of((1, saturday, "open", 10, 3.0))
    daily = daily_holdings(positions_of((1, 1, 1)), events, SESSIONS)
    assert daily["trade_date"].tolist() == list(SESSIONS[5:])
    first = daily.iloc[0]
    assert (first["quantity_start"], first["quantity"], first["trade_value_usd"]) == (10, 10, 0)


def test_mark_to_market_pnl_sums_to_realized_over_a_closed_life() -> None:
    positions = positions_of((1, 1, 100))
    events = events_of(
        (1, D[2], "open", 3, 4.0),
        (1, D[4], "increase", 2, 5.5),
        (1, D[6], "decrease", -4, 6.0),
        (1, D[8], "close", -1, 3.0),
    )
    closes = pd.Series(np.linspace(4.2, 3.0, len(SESSIONS)), index=SESSIONS)
    # Load events are priced at that session's close, except the open (the file's price).
    closes[D[4]], closes[D[6]], closes[D[8]] = 5.5, 6.0, 3.0
    daily = daily_holdings(positions, events, SESSIONS)
    pnl = mark_to_market_pnl(
        daily["quantity_start"],
        daily["quantity"],
        closes.shift(1).reindex(daily["trade_date"]).to_numpy(),
        closes.reindex(daily["trade_date"]).to_numpy(),
        daily["trade_value_usd"],
        100,
    )
    assert np.isfinite(pnl).all()
    assert pnl.sum() == pytest.approx(daily["realized_pnl_cum_usd"].iloc[-1])
    # On the close day the position is valued (its P&L from the previous close) and realized.
    last = daily.iloc[-1]
    assert last["trade_date"] == D[8] and last["quantity_start"] == 1 and last["quantity"] == 0
    assert pnl[-1] == pytest.approx(1 * (3.0 - closes[D[7]]) * 100)


def test_holdings_of_a_past_day_do_not_change_when_later_events_are_appended() -> None:
    positions = positions_of((1, 1, 1), (2, 1, 1))
    before = events_of((1, D[1], "open", 100, 10.0), (2, D[3], "open", -50, 20.0))
    window = SESSIONS[:6]
    first = daily_holdings(positions, before, window)
    later = pd.concat(
        [
            before,
            events_of((1, D[6], "decrease", -40, 12.0), (2, D[6], "close", 50, 18.0)).assign(
                id=[3, 4]
            ),
        ],
        ignore_index=True,
    )
    again = daily_holdings(positions, later, SESSIONS)
    past = again[again["trade_date"] < D[6]].reset_index(drop=True)
    pd.testing.assert_frame_equal(past, first[first["trade_date"] < D[6]].reset_index(drop=True))
    day = holdings_on(positions, later, D[6]).set_index("position_id")
    assert day.loc[1, "quantity_start"] == 100 and day.loc[1, "quantity"] == 60
    assert day.loc[2, "realized_pnl_usd"] == pytest.approx(100)  # (18 - 20) x -50


def test_positions_without_events_are_an_error() -> None:
    with pytest.raises(ValueError, match="positions without events: 2"):
        daily_holdings(
            positions_of((1, 1, 1), (2, 1, 1)), events_of((1, D[1], "open", 1, 1.0)), SESSIONS
        )


# ---------------------------------------------------------------------------------------------
# Flows and time-weighted returns


def test_daily_flows() -> None:
    changes = pd.DataFrame(
        {
            "portfolio_id": [1, 1, 1, 2, 1],
            "change_date": [D[2], D[2], D[4], D[2], SESSIONS[0] - pd.Timedelta(days=3)],
            "amount_usd": [1000.0, -300.0, 50.0, -20.0, 999.0],
        }
    )
    flows = daily_flows(changes, SESSIONS)
    assert flows.to_dict("records") == [
        {"portfolio_id": 1, "trade_date": D[2], "flows_usd": 700.0,
         "contributions_usd": 1000.0, "withdrawals_usd": -300.0},
        {"portfolio_id": 2, "trade_date": D[2], "flows_usd": -20.0,
         "contributions_usd": 0.0, "withdrawals_usd": -20.0},
        {"portfolio_id": 1, "trade_date": D[4], "flows_usd": 50.0,
         "contributions_usd": 50.0, "withdrawals_usd": 0.0},
    ]  # fmt: skip
    saturday = changes.assign(change_date=D[5] + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="not in sessions"):
        daily_flows(saturday, SESSIONS)


def test_twr_with_a_mid_window_contribution_equals_chained_sub_periods() -> None:
    """Equity 1,000,000 at the start; +2% and -1% days; 500,000 contributed at the start of day
    3; then +1.5% and +0.5% days. The sub-period returns by hand: before the contribution the
    portfolio went from 1,000,000 to 1,009,800 (1.02 x 0.99); from the contribution on (day 3's
    start, 1,509,800) to the end, 1,509,800 x 1.015 x 1.005."""
    pnl = [20_000.0, -10_200.0, 22_647.0, 7_662.235]
    daily = pd.DataFrame(
        {
            "portfolio_id": 1,
            "trade_date": SESSIONS[:4],
            "pnl_usd": pnl,
            "flows_usd": [0.0, 0.0, 500_000.0, 0.0],
        }
    )
    out = time_weighted_returns(daily, {1: 1_000_000.0})
    end_before = 1_000_000 + 20_000 - 10_200
    start_after = end_before + 500_000
    end = start_after + 22_647 + 7_662.235
    by_hand = (end_before / 1_000_000) * (end / start_after) - 1
    assert out["twr_cumulative"].iloc[-1] == pytest.approx(by_hand, rel=1e-12)
    assert out["twr_daily"].tolist() == pytest.approx([0.02, -0.01, 0.015, 0.005])
    assert out["equity_usd"].iloc[-1] == pytest.approx(end)
    assert out["equity_start_usd"].iloc[2] == pytest.approx(start_after)
    # The contribution is not a gain: the simple P&L / start-equity return would say otherwise.
    assert (end - 1_000_000) / 1_000_000 > 0.5 > out["twr_cumulative"].iloc[-1]
    # Chaining two halves gives the whole.
    first = time_weighted_returns(daily.iloc[:2], {1: 1_000_000.0})
    second = time_weighted_returns(
        daily.iloc[2:],
        {1: first["equity_usd"].iloc[-1]},
        start_twr_cumulative={1: first["twr_cumulative"].iloc[-1]},
    )
    assert second["twr_cumulative"].iloc[-1] == pytest.approx(by_hand, rel=1e-12)


def test_twr_without_capital_is_nan_with_a_reason() -> None:
    daily = pd.DataFrame(
        {
            "portfolio_id": [1, 1, 1, 2],
            "trade_date": [D[1], D[2], D[3], D[1]],
            "pnl_usd": [10.0, 5.0, 1.0, 1.0],
            "flows_usd": [-120.0, 0.0, 0.0, 0.0],
        }
    )
    out = time_weighted_returns(daily, pd.Series({1: 100.0}))
    mine = out[out["portfolio_id"] == 1]
    # Day 1 starts at 100 - 120 = -20 and the equity stays negative (-10, -5) after it.
    assert mine["equity_start_usd"].tolist() == pytest.approx([-20.0, -10.0, -5.0])
    assert (mine["twr_reason"] == NON_POSITIVE_BASE).all()
    assert mine["twr_daily"].isna().all() and mine["twr_cumulative"].isna().all()
    other = out[out["portfolio_id"] == 2].iloc[0]
    assert np.isnan(other["twr_daily"]) and "no starting equity" in other["twr_reason"]
    # A day without a P&L: no return that day, no equity or cumulative return after it.
    gap = daily.assign(pnl_usd=[1.0, np.nan, 1.0, 1.0], flows_usd=0.0)
    out = time_weighted_returns(gap, {1: 100.0, 2: 100.0})
    mine = out[out["portfolio_id"] == 1]
    assert mine["twr_daily"].iloc[0] == pytest.approx(0.01)
    assert mine["twr_daily"].iloc[1:].isna().all() and mine["equity_usd"].iloc[1:].isna().all()
    assert mine["twr_reason"].tolist()[1:] == [NO_PNL, NO_EQUITY]
