"""Closes, returns, realized volatility, model option bars and price-jump flags (pure functions).

Each test here is one defect of issue 9 on bad input: a close <= 0, duplicate bars, unsorted
or tz-aware sessions, near-zero model option prices and unadjusted splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics import market
from sigmasight_pipeline.analytics.greeks import bs_price

SESSIONS = calendar.sessions("2026-11-02", "2026-11-13")  # 10 sessions


def _bars(closes: dict[str, list[float]], sessions: pd.DatetimeIndex = SESSIONS) -> pd.DataFrame:
    return pd.DataFrame(
        [(s, d, c) for s, cs in closes.items() for d, c in zip(sessions, cs, strict=False)],
        columns=["symbol", "trade_date", "close"],
    )


# --- a close <= 0 is never a price ------------------------------------------------------------


def test_non_positive_closes_are_missing_in_the_close_matrix() -> None:
    prices = _bars({"AAA": [10, 0, 11, -2, 12, np.inf, 13], "BBB": [0.0]})
    closes = market.close_matrix(prices, SESSIONS[:7])
    assert closes["AAA"].tolist()[:3] == [10, pytest.approx(np.nan, nan_ok=True), 11]
    assert closes["AAA"].isna().tolist() == [False, True, False, True, False, True, False]
    assert "BBB" in closes.columns and closes["BBB"].isna().all()  # kept, never a price


def test_daily_returns_skip_a_zero_close_and_its_rebound() -> None:
    """MSFT at 0.00 once gave a -100 % day; the rebound day must not be +inf either."""
    prices = _bars({"MSFT": [400, 404, 0, 408, 410, -1, 412, 416]})
    days = SESSIONS[1:8]
    out = market.daily_returns(prices, days, SESSIONS[:8]).set_index("trade_date")
    # Returns only where both closes are prices: D1 (404/400), D4 (410/408), D7 (416/412).
    assert list(out.index) == [SESSIONS[1], SESSIONS[4], SESSIONS[7]]
    np.testing.assert_allclose(out["daily_return"], [404 / 400 - 1, 410 / 408 - 1, 416 / 412 - 1])
    assert np.isfinite(out["daily_return"]).all() and (out["daily_return"] > -0.5).all()


def test_realized_volatility_ignores_non_positive_closes() -> None:
    closes = pd.DataFrame({"A": [100.0, 101, 0.0, 102, 103]}, index=SESSIONS[:5])
    vol = market.realized_volatility(closes, window=2)
    # returns: 0.01, NaN (to 0), NaN (from 0), 102/101 - 1 is not taken (no close in between)
    assert vol["A"].isna().all()
    clean = closes.replace(0.0, np.nan)
    pd.testing.assert_frame_equal(vol, market.realized_volatility(clean, window=2))


# --- duplicates are errors --------------------------------------------------------------------


def test_duplicate_bars_raise_naming_the_pairs() -> None:
    prices = _bars({"AAA": [10, 11, 12], "BBB": [20, 21, 22]})
    dupes = pd.concat([prices, prices.iloc[[1, 4]].assign(close=[99.0, 98.0])])
    for call in (
        lambda: market.close_matrix(dupes, SESSIONS[:3]),
        lambda: market.daily_returns(dupes, SESSIONS[1:3], SESSIONS[:3]),
    ):
        with pytest.raises(ValueError, match=r"\(AAA, 2026-11-03\), \(BBB, 2026-11-03\)"):
            call()


def test_returns_matrix_pivots_and_rejects_duplicates() -> None:
    returns = pd.DataFrame(
        {
            "symbol": ["B", "A", "A"],
            "trade_date": SESSIONS[[1, 1, 0]],
            "daily_return": [0.1, 0.2, 0.3],
        }
    )
    wide = market.returns_matrix(returns)
    assert list(wide.index) == [SESSIONS[0], SESSIONS[1]]  # sorted
    assert wide.loc[SESSIONS[1], "A"] == 0.2 and np.isnan(wide.loc[SESSIONS[0], "B"])
    with pytest.raises(ValueError, match=r"duplicate .*\(2026-11-03, A\)"):
        market.returns_matrix(pd.concat([returns, returns.iloc[[1]]]))
    with pytest.raises(ValueError, match=r"infinite .*\(2026-11-03, B\)"):
        market.returns_matrix(returns.assign(daily_return=[np.inf, 0.2, 0.3]))
    with pytest.raises(ValueError, match="below -100 %"):
        market.returns_matrix(returns.assign(daily_return=[-1.5, 0.2, 0.3]))


# --- sessions: sorted, unique, tz-naive -------------------------------------------------------


def test_unsorted_sessions_give_the_same_returns_and_volatility() -> None:
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 10)))
    prices = _bars({"AAA": list(closes)})
    shuffled = SESSIONS[[3, 0, 9, 5, 1, 7, 2, 8, 4, 6]]
    expected = market.daily_returns(prices, SESSIONS[1:], SESSIONS)
    got = market.daily_returns(prices, shuffled[shuffled != SESSIONS[0]], shuffled)
    pd.testing.assert_frame_equal(got, expected)
    wide = pd.DataFrame({"AAA": closes}, index=SESSIONS)
    pd.testing.assert_frame_equal(
        market.realized_volatility(wide.iloc[rng.permutation(10)], window=3),
        market.realized_volatility(wide, window=3),
        check_names=False,
        check_freq=False,
    )


def test_duplicate_or_tz_aware_sessions_raise() -> None:
    prices = _bars({"AAA": [10, 11, 12]})
    with pytest.raises(ValueError, match="duplicate dates: 2026-11-03"):
        market.close_matrix(prices, SESSIONS[[0, 1, 1, 2]])
    with pytest.raises(ValueError, match="tz-naive"):
        market.close_matrix(prices, SESSIONS[:3].tz_localize("America/New_York"))
    aware = prices.assign(trade_date=prices["trade_date"].dt.tz_localize("UTC"))
    with pytest.raises(ValueError, match="tz-naive"):
        market.daily_returns(aware, SESSIONS[1:3], SESSIONS[:3])
    wide = pd.DataFrame({"A": [1.0, 2.0]}, index=SESSIONS[[0, 0]])
    with pytest.raises(ValueError, match="duplicate"):
        market.realized_volatility(wide)


# --- wanted pairs -----------------------------------------------------------------------------


def test_an_option_is_wanted_from_its_first_entry_to_its_expiry_and_a_stock_every_day() -> None:
    days = calendar.sessions("2026-11-02", "2026-11-13")
    securities = pd.DataFrame(
        {
            "symbol": ["AAA", "OPT_HELD", "OPT_EXPIRES", "OPT_UNKNOWN", "BBB"],
            "security_type": ["STOCK", "OPTION", "OPTION", "OPTION", "STOCK"],
            "expiry": pd.to_datetime([None, "2027-01-15", "2026-11-06", "2027-01-15", None]),
            # BBB's entry date is ignored: a stock's history feeds betas and volatilities
            "first_held": pd.to_datetime([None, "2026-11-08", "2026-11-03", None, "2026-11-12"]),
        }
    )
    wanted = market.wanted_pairs(securities, days).groupby("symbol")["trade_date"].agg(list)
    assert wanted["AAA"] == list(days)
    assert wanted["BBB"] == list(days)
    assert wanted["OPT_HELD"] == list(days[days >= "2026-11-09"])  # a Sunday entry: from Monday
    assert wanted["OPT_EXPIRES"] == list(days[(days >= "2026-11-03") & (days <= "2026-11-06")])
    assert wanted["OPT_UNKNOWN"] == list(days)  # never held: nothing bounds it but expiry
    without = market.wanted_pairs(securities.drop(columns="first_held"), days)
    assert len(without[without["symbol"] == "OPT_HELD"]) == len(days)


# --- model option bars ------------------------------------------------------------------------


def test_model_option_bars_never_give_tiny_or_zero_closes() -> None:
    """Deep OTM short-dated options priced 0.0 or 1e-300 once gave returns like +28,955."""
    history = calendar.sessions("2026-09-01", "2026-11-13")
    rng = np.random.default_rng(5)
    spot = pd.DataFrame(
        {"AAA": 100 * np.exp(np.cumsum(rng.normal(0, 0.015, len(history))))}, index=history
    )
    day = history[-1]
    s = spot["AAA"].iloc[-1]
    options = pd.DataFrame(
        {
            "symbol": ["ATM", "FAR", "EXPIRED_OTM", "EXPIRED_ITM"],
            "trade_date": [day] * 4,
            "underlying": ["AAA"] * 4,
            "option_right": ["C"] * 4,
            "strike": [round(s), 3 * s, s + 5, s - 5],
            "expiry": [day + pd.Timedelta(days=30), day + pd.Timedelta(days=2), day, day],
        }
    )
    vol = market.realized_volatility(spot).loc[day, "AAA"]
    raw = bs_price(s, options["strike"], [30 / 365, 2 / 365, 0, 0], 0.04, vol, True)
    assert raw[1] < 1e-100 and raw[2] == 0.0  # what the old code stored as closes
    bars = market.model_option_bars(options, spot, 0.04).set_index("symbol")
    assert sorted(bars.index) == ["ATM", "EXPIRED_ITM"]  # FAR and the worthless one: unpriced
    assert (bars["close"] >= market.MIN_MODEL_OPTION_PRICE).all()
    assert bars.loc["ATM", "close"] == pytest.approx(raw[0])
    assert bars.loc["EXPIRED_ITM", "close"] == pytest.approx(5.0)


# --- unadjusted splits ------------------------------------------------------------------------


def _split_series() -> pd.DataFrame:
    """NVDA-like closes with an unadjusted 7:1 split on the 6th session (-85.7 %)."""
    closes = [840.0, 850, 845, 860, 868, 868 / 7 * 1.001, 125, 126, 124, 127]
    other = [50.0, 51, 50.5, 52, 51.5, 52, 53, 52.5, 53, 54]
    option = [1.0, 1.5, 4.0, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6]  # +167 %: options not checked
    prices = _bars({"NVDA": closes, "XYZ": other, "XYZ261218C00050000": option})
    return market.daily_returns(prices, SESSIONS[1:], SESSIONS)


def test_unadjusted_split_is_flagged_without_a_split_record() -> None:
    returns = _split_series()
    flagged = market.flag_price_jumps(returns, None)
    assert list(flagged.columns) == market.JUMP_COLUMNS
    assert len(flagged) == 1
    row = flagged.iloc[0]
    assert (row["symbol"], row["trade_date"]) == ("NVDA", SESSIONS[5])
    assert row["daily_return"] == pytest.approx(1.001 / 7 - 1)  # -85.7 %
    assert row["reason"] == "jump of -85.7 % with no split on record"


def test_a_split_on_record_explains_the_move() -> None:
    returns = _split_series()
    splits = pd.DataFrame(
        {"symbol": ["NVDA"], "execution_date": [SESSIONS[5]], "split_from": [1], "split_to": [7]}
    )
    flagged = market.flag_price_jumps(returns, splits)
    assert flagged[["symbol", "trade_date", "reason"]].values.tolist() == [
        ["NVDA", SESSIONS[5], "split"]
    ]
    # Polygon dates a split on its execution day, which may be a weekend: next session matches.
    weekend = splits.assign(execution_date=[SESSIONS[5] - pd.Timedelta(days=2)])
    assert market.flag_price_jumps(returns, weekend)["reason"].tolist() == ["split"]
    # A split of the wrong size does not explain it.
    wrong = splits.assign(split_to=[2])
    reason = market.flag_price_jumps(returns, wrong)["reason"].iloc[0]
    assert reason == (
        "jump of -85.7 % not explained by the 2:1 split on 2026-11-09 (expected -50.0 %)"
    )


def test_small_splits_and_adjusted_series() -> None:
    # A 3:2 split (-33 %) is below the threshold: reported only because a record explains it.
    closes = [90.0, 91, 92, 92 * 2 / 3 * 0.99, 61, 62]
    returns = market.daily_returns(_bars({"ABC": closes}), SESSIONS[1:6], SESSIONS[:6])
    assert market.flag_price_jumps(returns, None).empty
    splits = pd.DataFrame(
        {"symbol": ["ABC"], "execution_date": [SESSIONS[3]], "split_from": [2], "split_to": [3]}
    )
    assert market.flag_price_jumps(returns, splits)["reason"].tolist() == ["split"]
    # An adjusted series has no jump on the split day: nothing to report.
    adjusted = market.daily_returns(
        _bars({"ABC": [60.0, 60.7, 61.3, 60.7, 61, 62]}), SESSIONS[1:6], SESSIONS[:6]
    )
    assert market.flag_price_jumps(adjusted, splits).empty
    # Crashes of more than 40 % with no split are flagged either way, rises too.
    crash = returns.assign(daily_return=[0.01, -0.45, 0.02, 0.5, 0.0])
    assert market.flag_price_jumps(crash, None)["daily_return"].tolist() == [-0.45, 0.5]
    with pytest.raises(ValueError, match="split_from and split_to > 0"):
        market.flag_price_jumps(returns, splits.assign(split_from=[0]))
