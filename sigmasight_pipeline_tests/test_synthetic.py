"""The synthetic market data provider: determinism, invariants, options, gaps, speed."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.analytics.greeks import bs_price
from sigmasight_pipeline.analytics.instruments import parse_occ
from sigmasight_pipeline.calendar import sessions
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    FACTOR_ETFS,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    SPLIT_COLUMNS,
    MarketDataProvider,
)
from sigmasight_pipeline.resources.synthetic import (
    SYNTHETIC_MISSING_TICKERS,
    SYNTHETIC_RATE,
    SyntheticMarket,
    _ar1,
    implied_vol_for,
)

TICKERS = ["AAPL", "MSFT", "SPY", "VTV", "ZZTOP", "JPM"]


def _wanted(tickers: list[str], days: pd.DatetimeIndex | list[date]) -> pd.DataFrame:
    pairs = [(t, pd.Timestamp(d).date()) for t in tickers for d in days]
    return pd.DataFrame(pairs, columns=["symbol", "trade_date"])


@pytest.mark.parametrize("n", [1, 2, 127, 128, 129, 6538])
@pytest.mark.parametrize("phi", [0.0, 0.5, 0.996, -0.9])
def test_ar1_level_is_scipy_lfilter(n: int, phi: float) -> None:
    from scipy.signal import lfilter

    eps = np.random.default_rng(n).standard_normal(n) * 0.02
    expected = lfilter([1.0], [1.0, -phi], eps)
    got = _ar1(eps, phi)
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14 * np.abs(expected).max())


def _sorted(bars: pd.DataFrame) -> pd.DataFrame:
    return bars.sort_values(["symbol", "trade_date"]).reset_index(drop=True)


def test_implements_the_protocol() -> None:
    market = SyntheticMarket()
    assert isinstance(market, MarketDataProvider)
    splits = market.splits(["AAPL", "SPY"], date(2005, 1, 3), date(2030, 12, 31))
    assert splits.empty and list(splits.columns) == SPLIT_COLUMNS
    assert market.name == "synthetic"
    bars = market.daily_bars(_wanted(["AAPL"], sessions("2024-03-01", "2024-03-08")))
    assert list(bars.columns) == BAR_COLUMNS
    assert all(isinstance(d, date) for d in bars["trade_date"])
    assert set(bars["source"]) == {"synthetic"}
    assert bars["volume"].dtype == np.int64
    assert market.daily_bars(_wanted([], [])).columns.tolist() == BAR_COLUMNS


def test_same_answer_however_asked() -> None:
    days = sessions("2024-06-03", "2024-07-31")
    market = SyntheticMarket()
    whole = _sorted(market.daily_bars(_wanted(TICKERS, days)))
    one_by_one = pd.concat(
        [market.daily_bars(_wanted([t], [d])) for t in TICKERS for d in days[::-1]]
    )
    mixed = _wanted([*TICKERS[::-1], "NVDA", "XOM"], days).sample(frac=1.0, random_state=3)
    mixed_bars = SyntheticMarket().daily_bars(mixed)
    mixed_bars = mixed_bars[mixed_bars["symbol"].isin(TICKERS)]
    pd.testing.assert_frame_equal(whole, _sorted(one_by_one))
    pd.testing.assert_frame_equal(whole, _sorted(mixed_bars))


def test_same_answer_in_every_process() -> None:
    """Golden values: a per-process salt (Python's hash()) or an order dependence breaks this.

    If the generator is changed on purpose, regenerate these numbers.
    """
    wanted = pd.DataFrame(
        {
            "symbol": ["AAPL", "QQQ", "SPY", "AAPL250620P00045000"],
            "trade_date": [date(2023, 5, 10)] * 3 + [date(2025, 6, 2)],
        }
    )
    bars = SyntheticMarket().daily_bars(wanted).set_index("symbol").loc[wanted["symbol"]]
    expected = [33.03662543965331, 115.83233786426817, 465.0744849277243, 0.2794429374462011]
    np.testing.assert_allclose(bars["close"], expected, rtol=1e-12)
    assert bars["volume"].tolist() == [1709292, 1754466, 354902, 1448]


def test_sessions_only_including_future_and_first_years() -> None:
    for start, end in [
        ("2005-01-01", "2005-03-31"),
        ("2024-11-01", "2025-01-15"),
        ("2030-11-15", "2030-12-31"),
    ]:
        every_day = [d.date() for d in pd.date_range(start, end)]
        bars = SyntheticMarket().daily_bars(_wanted(["AAPL", "SPY"], every_day))
        expected = [d.date() for d in sessions(max(start, "2005-01-03"), end)]
        for _, got in bars.groupby("symbol"):
            assert got["trade_date"].tolist() == expected
    before = SyntheticMarket().daily_bars(_wanted(["AAPL"], [date(2004, 12, 31), date(1999, 1, 4)]))
    assert before.empty


def test_ohlc_invariants_and_sensible_prices() -> None:
    tickers = ["AAPL", "SPY", "MTUM", "IWM", "SPLV", "TSLA", "A", "B.C", "LONGER"]
    bars = SyntheticMarket().daily_bars(_wanted(tickers, sessions("2005-01-03", "2030-12-31")))
    assert len(bars) == len(tickers) * len(sessions("2005-01-03", "2030-12-31"))
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert np.all(lo > 0)
    assert np.all(h >= np.maximum(o, c)) and np.all(lo <= np.minimum(o, c))
    assert np.all(bars["volume"] > 0)
    recent = bars[bars["trade_date"] == date(2025, 1, 2)]
    assert recent["close"].between(10, 500).all()
    assert bars["close"].between(0.5, 20_000).all()
    daily = bars.groupby("symbol")["close"].pct_change().dropna()
    assert daily.abs().max() < 0.25
    assert 0.005 < daily.std() < 0.04


def test_planted_betas_ranges_and_etfs() -> None:
    market = SyntheticMarket()
    names = list(FACTOR_ETFS)
    etfs = market.planted_betas(list(FACTOR_ETFS.values()))
    assert list(etfs.columns) == names
    expected = np.eye(len(names))
    expected[:, 0] = 1.0
    np.testing.assert_array_equal(etfs.to_numpy(), expected)
    stocks = market.planted_betas([f"S{i}" for i in range(300)])
    assert stocks["Market"].between(0.5, 1.6).all()
    assert stocks[names[1:]].abs().le(0.8).all().all()
    assert market.planted_betas(["NODATA", "AAPL250620C00150000"]).isna().all().all()


def test_options_are_black_scholes_on_the_underlying() -> None:
    call, put = "AAPL250620C00150000", "AAPL250620P00140000"
    days = sessions("2025-05-01", "2025-06-30")
    market = SyntheticMarket()
    result = market.fetch_bars(_wanted([call, put, "AAPL"], days))
    bars = result.bars
    under = bars[bars["symbol"] == "AAPL"].set_index("trade_date")["close"]
    vol = implied_vol_for("AAPL")
    assert 0.2 <= vol <= 0.6
    for symbol in (call, put):
        contract = parse_occ(symbol)
        got = bars[bars["symbol"] == symbol].set_index("trade_date")
        worthless = result.issues[result.issues["symbol"] == symbol]
        # Every session to expiry is a bar or, once worth exactly 0, a "rejected" issue.
        listed = sorted([*got.index, *worthless["trade_date"]])
        assert listed == [d.date() for d in days if d.date() <= contract.expiry]
        assert (worthless["kind"] == "rejected").all()
        assert worthless["detail"].str.contains("close 0.0 is not a positive").all()
        t = np.array([(contract.expiry - d).days / 365 for d in listed])
        spot = under.loc[listed].to_numpy()
        model = bs_price(spot, contract.strike, t, SYNTHETIC_RATE, vol, contract.right == "C")
        expected = pd.Series(model, index=listed)
        np.testing.assert_allclose(got["close"], expected.loc[got.index], rtol=0, atol=1e-12)
        assert (expected.loc[worthless["trade_date"]] == 0).all()
        intrinsic = (
            max(spot[-1] - contract.strike, 0)
            if contract.right == "C"
            else max(contract.strike - spot[-1], 0)
        )
        assert expected.iloc[-1] == pytest.approx(intrinsic, abs=1e-12)
        o, h, lo, c = (got[k].to_numpy() for k in ("open", "high", "low", "close"))
        assert np.all(lo >= 0) and np.all(h >= np.maximum(o, c)) and np.all(lo <= np.minimum(o, c))
        assert got["volume"].dtype == np.int64
    assert len(bars[bars["symbol"] == put]) == len(days[days.date <= parse_occ(put).expiry])
    assert not result.issues[result.issues["symbol"] == call].empty  # the OTM call expires at 0
    after = market.daily_bars(_wanted([call], [date(2025, 6, 23)]))
    assert after.empty
    with_prefix = market.daily_bars(_wanted(["O:" + call], [date(2025, 6, 2)]))
    plain = bars[(bars["symbol"] == call) & (bars["trade_date"] == date(2025, 6, 2))]
    assert with_prefix["close"].tolist() == plain["close"].tolist()


def test_missing_tickers_and_days_are_absent() -> None:
    days = sessions("2024-01-02", "2024-01-31")
    gap = (days[5].date(), days[6].date())
    market = SyntheticMarket(missing={("AAPL", gap[0]), ("MSFT", gap[1])})
    assert "NODATA" in SYNTHETIC_MISSING_TICKERS
    tickers = ["AAPL", "MSFT", *sorted(SYNTHETIC_MISSING_TICKERS), "NODATA240119C00010000"]
    bars = market.daily_bars(_wanted(tickers, days))
    assert set(bars["symbol"]) == {"AAPL", "MSFT"}
    aapl = set(bars.loc[bars["symbol"] == "AAPL", "trade_date"])
    msft = set(bars.loc[bars["symbol"] == "MSFT", "trade_date"])
    assert aapl == {d.date() for d in days} - {gap[0]}
    assert msft == {d.date() for d in days} - {gap[1]}
    full = SyntheticMarket().daily_bars(_wanted(["AAPL"], days))
    kept = full[full["trade_date"] != gap[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, bars[bars["symbol"] == "AAPL"].reset_index(drop=True))
    si = market.short_interest(["AAPL", "NODATA"], [gap[0], gap[1]])
    assert si["symbol"].tolist() == ["AAPL"] and si["trade_date"].tolist() == [gap[1]]


def test_security_info() -> None:
    info = SyntheticMarket().security_info(["AAPL", "JPM", "SPY", "ZZTOP", "AAPL250620C00150000"])
    assert list(info.columns) == SECURITY_INFO_COLUMNS
    rows = info.set_index("symbol")
    assert rows.loc["AAPL", "sector"] == "Information Technology"
    assert rows.loc["JPM", "industry"] == "Banks"
    assert rows.loc["SPY", "sector"] == "ETF"
    assert isinstance(rows.loc["ZZTOP", "sector"], str)
    assert rows.loc["AAPL250620C00150000"].isna().all()
    again = SyntheticMarket().security_info(["ZZTOP"])
    assert again["industry"].iloc[0] == rows.loc["ZZTOP", "industry"]


def test_short_interest_ranges_and_smoothness() -> None:
    start = date(2024, 1, 1)
    days = [start + timedelta(days=i) for i in range(400)]
    symbols = [f"Q{i}" for i in range(40)] + ["SPY", "QQQ", "AAPL250620C00150000"]
    si = SyntheticMarket().short_interest(symbols, days)
    assert list(si.columns) == SHORT_INTEREST_COLUMNS
    assert set(si["symbol"]) == {f"Q{i}" for i in range(40)}
    assert set(si["trade_date"]) == {d.date() for d in sessions(days[0], days[-1])}
    assert si["short_interest_pct_float"].between(1, 25).all()
    assert si["days_to_cover"].between(0.5, 10).all()
    assert si.groupby("symbol")["short_interest_pct_float"].mean().std() > 1.0
    si = si.sort_values(["symbol", "trade_date"])
    gaps = pd.to_datetime(si["trade_date"]).groupby(si["symbol"]).diff().dt.days
    steps = np.log(si["short_interest_pct_float"]).groupby(si["symbol"]).diff().abs() / gaps
    assert steps.max() < 0.03  # at most ~3 % of its level per calendar day
    one = SyntheticMarket().short_interest(["Q7"], [date(2024, 6, 3)])
    same = si[(si["symbol"] == "Q7") & (si["trade_date"] == date(2024, 6, 3))]
    assert one.iloc[0, 2:].tolist() == same.iloc[0, 2:].tolist()


def test_bars_for_a_large_request_are_complete_and_cached() -> None:
    tickers = [f"W{i:03d}" for i in range(100)]
    wanted = _wanted(tickers, sessions("2026-01-02", "2026-08-07"))
    assert len(wanted) == 100 * 150
    market = SyntheticMarket()
    first = market.daily_bars(wanted)
    again = market.daily_bars(wanted.sample(frac=1.0, random_state=1))
    assert len(first) == len(wanted)
    pd.testing.assert_frame_equal(first, again)
