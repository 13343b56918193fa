"""Valuation, snapshots and exposures on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics import exposures, valuation
from sigmasight_pipeline.analytics.instruments import SymbolError, parse_occ, position_type

SESSIONS = calendar.sessions("2026-11-02", "2026-11-06")  # Mon..Fri


def positions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "portfolio_id": [7, 7, 7],
            "symbol": ["AAA", "BBB", "AAA261218C00010000"],
            "position_type": ["LONG", "SHORT", "SC"],
            "quantity": [10.0, -5.0, -2.0],
            "multiplier": [1, 1, 100],
            "entry_price": [9.0, 21.0, 1.5],
            "entry_date": pd.to_datetime(["2026-11-02", "2026-11-02", "2026-11-04"]),
            "expiry": pd.to_datetime([None, None, "2026-12-18"]),
        }
    )


def prices() -> pd.DataFrame:
    closes = {"AAA": [10, 11, 12, 11, 13], "BBB": [20, 19, 22, 21, 20],
              "AAA261218C00010000": [1.0, 1.2, 2.0, 1.5, 3.0]}  # fmt: skip
    return pd.DataFrame(
        [(s, d, c) for s, cs in closes.items() for d, c in zip(SESSIONS, cs, strict=True)],
        columns=["symbol", "trade_date", "close"],
    )


def test_position_values_by_hand():
    values = valuation.position_values(positions(), prices(), SESSIONS, SESSIONS[1:])
    day = values[values["trade_date"] == SESSIONS[2]].set_index("position_id")  # Wednesday
    # Long 10 AAA at 12: MV 120, exposure 120, cost 90, unrealized 30, daily 10*(12-11)
    assert day.loc[
        1, ["market_value", "exposure", "cost_basis", "unrealized_pnl", "daily_pnl"]
    ].tolist() == [120, 120, 90, 30, 10]
    # Short 5 BBB at 22: MV 110, exposure -110, cost -105, unrealized -5, daily -5*(22-19)
    assert day.loc[
        2, ["market_value", "exposure", "cost_basis", "unrealized_pnl", "daily_pnl"]
    ].tolist() == [110, -110, -105, -5, -15]
    # Short 2 calls entered Wednesday at 1.5, close 2.0: MV 400, exposure -400, daily P&L from
    # the entry price: -2*100*(2.0-1.5) = -100
    assert day.loc[3, ["market_value", "exposure", "daily_pnl"]].tolist() == [400, -400, -100]
    assert 3 not in values.loc[values["trade_date"] == SESSIONS[1], "position_id"].tolist()


def test_snapshot_aggregates_by_hand():
    values = valuation.position_values(positions(), prices(), SESSIONS, SESSIONS)
    snap = valuation.portfolio_snapshots(values, SESSIONS, SESSIONS[2:3], window=3)
    row = snap.iloc[0]
    assert row["total_value"] == 120 + 110 + 400
    assert row["long_exposure"] == 120 and row["short_exposure"] == -510
    assert row["gross_exposure"] == 630 and row["net_exposure"] == -390
    assert row["daily_pnl"] == 10 - 15 - 100
    # window of 3 sessions: Mon (entry day: 10*(10-9) + -5*(20-21) = 15), Tue (10 + 5), Wed (-105)
    assert row["window_pnl"] == 15 + 15 - 105
    assert row["window_start"] == SESSIONS[0]
    assert (row["long_count"], row["short_count"], row["sc_count"]) == (1, 1, 1)


def test_position_factor_exposures_are_one_wide_row_per_position_day():
    pos = pd.DataFrame({"trade_date": [SESSIONS[0]] * 3, "position_id": [1, 2, 3],
                        "portfolio_id": [1, 1, 1], "symbol": ["A", "B", "ZZZ"],
                        "underlying": ["A", "B", "ZZZ"],
                        "exposure": [600.0, -400.0, 5.0]})  # fmt: skip
    betas = pd.DataFrame({"trade_date": [SESSIONS[0]] * 3, "symbol": ["A", "B", "A"],
                          "factor": ["Market", "Market", "Momentum"], "beta": [1.2, 0.5, np.nan],
                          "n_obs": [60, 60, 12],
                          "reason": [None, None, "only 12 observations (< 20)"]})  # fmt: skip
    si = pd.DataFrame({"trade_date": [SESSIONS[0]], "symbol": ["A"],
                       "short_interest_pct_float": [10.0]})  # fmt: skip
    wide = exposures.position_factor_exposures(pos, betas, si).set_index("position_id")
    assert list(wide.columns) == [
        c for c in exposures.POSITION_FACTOR_COLUMNS if c != "position_id"
    ]
    assert wide.loc[1, "beta_market"] == 1.2 and wide.loc[2, "beta_market"] == 0.5
    assert wide.loc[1, "short_interest"] == pytest.approx(0.10)
    assert np.isnan(wide.loc[2, "short_interest"])
    assert "Momentum: only 12 observations (< 20)" in wide.loc[1, "reason"]
    assert f"Value: {exposures.NO_BETA}" in wide.loc[1, "reason"]
    assert wide.loc[3, "reason"] == "no betas for the underlying on this day"
    assert wide.loc[3, "n_obs"] == 0 and np.isnan(wide.loc[3, "beta_market"])


def test_occ_symbols():
    contract = parse_occ("AAPL270115C00200000")
    assert (contract.underlying, contract.expiry.isoformat(), contract.right, contract.strike) == (
        "AAPL", "2027-01-15", "C", 200.0)  # fmt: skip
    assert parse_occ("O:SPY261218P00450500").strike == 450.5
    for bad in ("AAPL271315C00200000", "AAPL270115X00200000", "AAPL270115C0020"):
        with pytest.raises(SymbolError):
            parse_occ(bad)
    assert position_type(-3, "P") == "SP" and position_type(5, None) == "LONG"


def test_lookup_gives_missing_for_absent_dates_and_symbols():
    """An absent day or symbol is `missing`, never the last row (a -1 index wraps around)."""
    from sigmasight_pipeline.analytics.market import lookup

    matrix = pd.DataFrame({"A": [1.0, 2.0], "B": [3.0, 4.0]}, index=SESSIONS[:2])
    got = lookup(matrix, [SESSIONS[1], SESSIONS[4], SESSIONS[0]], ["B", "A", "Z"])
    assert got[0] == 4.0 and np.isnan(got[1]) and np.isnan(got[2])
    assert np.isnan(lookup(matrix.iloc[:0], [SESSIONS[0]], ["A"])).all()


def _one_position(symbol: str, entry: pd.Timestamp, multiplier: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [1], "portfolio_id": [1], "symbol": [symbol], "position_type": ["LONG"],
         "quantity": [10.0], "multiplier": [multiplier], "entry_price": [9.0],
         "entry_date": [entry], "expiry": [pd.NaT]}
    )  # fmt: skip


def test_zero_close_is_not_a_price() -> None:
    """A 0.00 close once gave a P&L of -176k then +173k; it is carried forward and flagged."""
    closes = pd.DataFrame(
        {"symbol": "AAA", "trade_date": SESSIONS, "close": [10.0, 11.0, 0.0, 12.0, -3.0]}
    )
    values = valuation.position_values(_one_position("AAA", SESSIONS[0]), closes, SESSIONS,
                                       SESSIONS[1:]).set_index("trade_date")  # fmt: skip
    wed, thu, fri = values.loc[SESSIONS[2]], values.loc[SESSIONS[3]], values.loc[SESSIONS[4]]
    assert wed["price_source"] == "carried_forward" and wed["price"] == 11.0
    assert wed["price_date"] == SESSIONS[1] and wed["daily_pnl"] == 0.0
    assert wed["pnl_reason"] == "close <= 0 is not a price: price carried forward from 2026-11-03"
    # Thursday's P&L runs from the last real price: 10 x (12 - 11), not 10 x (12 - 0).
    assert thu["price_source"] == "market" and thu["daily_pnl"] == 10.0
    assert thu["pnl_reason"] is None
    assert fri["price"] == 12.0 and fri["price_source"] == "carried_forward"
    assert values["market_value"].min() > 0


def test_non_positive_closes_beyond_the_carry_limit_are_missing() -> None:
    sessions = calendar.sessions("2026-10-01", "2026-10-20")
    closes = pd.DataFrame({"symbol": "AAA", "trade_date": sessions, "close": 0.0})
    closes.loc[0, "close"] = 10.0
    values = valuation.position_values(_one_position("AAA", sessions[0]), closes, sessions,
                                       sessions)  # fmt: skip
    late = values.iloc[-1]
    assert late["price_source"] == "missing" and np.isnan(late["price"])
    assert np.isnan(late["daily_pnl"]) and np.isnan(late["market_value"])
    assert late["pnl_reason"] == (
        "no price: close <= 0 is not a price and no close in the 5 sessions before"
    )


def test_first_priced_session_has_zero_pnl_with_a_reason() -> None:
    """Issue 8: an option with no bar before its first priced session is not a NULL P&L."""
    option = "AAA261218C00010000"
    closes = pd.DataFrame({"symbol": option, "trade_date": SESSIONS[2:], "close": [2.0, 2.5, 2.25]})
    values = valuation.position_values(
        _one_position(option, SESSIONS[0], multiplier=100), closes, SESSIONS, SESSIONS
    ).set_index("trade_date")
    assert list(values.columns) == valuation.POSITION_VALUE_COLUMNS[1:]  # trade_date: index
    mon = values.loc[SESSIONS[0]]  # entry day without a price: missing, with a reason
    assert mon["price_source"] == "missing" and np.isnan(mon["daily_pnl"])
    assert mon["pnl_reason"] == "no price: no close on this session or the 5 before"
    wed = values.loc[SESSIONS[2]]
    assert wed["price_source"] == "market" and wed["daily_pnl"] == 0.0
    assert np.isnan(wed["prev_price"])
    assert wed["pnl_reason"] == valuation.FIRST_PRICED_SESSION
    assert wed["unrealized_pnl"] == pytest.approx(10 * 100 * (2.0 - 9.0))
    thu = values.loc[SESSIONS[3]]
    assert thu["daily_pnl"] == pytest.approx(10 * 100 * 0.5) and thu["pnl_reason"] is None
    # Entered on a priced day: the P&L runs from the entry price, as before.
    entered = valuation.position_values(
        _one_position(option, SESSIONS[3], multiplier=100), closes, SESSIONS, SESSIONS
    ).set_index("trade_date")
    assert entered.loc[SESSIONS[3], "daily_pnl"] == pytest.approx(10 * 100 * (2.5 - 9.0))
    assert entered.loc[SESSIONS[3], "pnl_reason"] is None


def test_duplicate_prices_and_factor_rows_raise() -> None:
    doubled = pd.concat([prices(), prices().iloc[[0]].assign(close=50.0)])
    with pytest.raises(
        ValueError, match=r"duplicate \(symbol, trade_date\) rows: \(AAA, 2026-11-02\)"
    ):
        valuation.position_values(positions(), doubled, SESSIONS, SESSIONS)
    values = valuation.position_values(positions(), prices(), SESSIONS, SESSIONS)
    snaps = valuation.portfolio_snapshots(values, SESSIONS, SESSIONS[2:3], window=3)
    factor_rows = pd.DataFrame(
        {"trade_date": [SESSIONS[2]] * 2, "portfolio_id": [7, 7], "factor": ["Market"] * 2,
         "beta": [1.0, 2.0]}
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"\(2026-11-04, 7, Market\)"):
        valuation.enrich_snapshots(
            snaps,
            pd.DataFrame(columns=["trade_date", "portfolio_id", "view",
                                  *valuation.SNAPSHOT_GREEK_COLUMNS]),
            factor_rows,
            pd.DataFrame(columns=["trade_date", "portfolio_id",
                                  *valuation.SNAPSHOT_RISK_COLUMNS]),
        )  # fmt: skip
