"""The yfinance provider: the real yfinance package against a fake Yahoo server on loopback.

The provider's session rewrites every `*.yahoo.com` URL to the fake server, so nothing leaves
the machine; the fake records the host each request was meant for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.calendar import last_sessions
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    ISSUE_COLUMNS,
    SECURITY_INFO_COLUMNS,
    SPLIT_COLUMNS,
    MarketDataProvider,
    MarketDataResource,
    _provider,
)
from sigmasight_pipeline.resources.synthetic import SyntheticMarket
from sigmasight_pipeline.resources.yahoo import YahooMarketData, yahoo_ticker
from sigmasight_pipeline_tests.fake_yahoo import FakeYahoo

DAYS = [d.date() for d in last_sessions("2025-06-30", 30)]
OPTION = "AAPL250718C00200000"


def wanted(symbols: list[str], days: list[date]) -> pd.DataFrame:
    return pd.DataFrame([(s, d) for s in symbols for d in days], columns=["symbol", "trade_date"])


def synthetic_closes(symbol: str, days: list[date]) -> np.ndarray:
    bars = SyntheticMarket().daily_bars(wanted([symbol], days))
    return bars["close"].round(4).to_numpy()


@pytest.fixture
def fake_yahoo() -> Iterator[FakeYahoo]:
    market = SyntheticMarket()

    def bars(symbol: str, days: list[date]) -> pd.DataFrame:
        return market.daily_bars(wanted([symbol], days))

    with FakeYahoo(bars) as fake:
        yield fake


@pytest.fixture
def yahoo(fake_yahoo: FakeYahoo, db_url: str, tmp_path):
    """make(**overrides) -> YahooMarketData on the fake server, 10 requests per 1 s window."""
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()  # yfinance memoizes GETs by (Yahoo) URL in the process
    with connect(db_url) as conn:
        conn.execute("DELETE FROM sigmasight.rate_limit_log WHERE limiter = 'yfinance'")
        conn.execute("DELETE FROM sigmasight.provider_security_info WHERE provider = 'yfinance'")
        conn.commit()

    def make(**kw: object) -> YahooMarketData:
        settings: dict = {
            "database_url": db_url,
            "base_url": fake_yahoo.url,
            "requests_per_minute": 600.0,
            "rate_window_seconds": 1.0,
            "rate_margin_seconds": 0.25,
            "cache_dir": tmp_path / "yfinance",
            "timeout": 5.0,
            "backoff_base": 0.01,
            "jitter": 0.01,
        }
        settings.update(kw)
        return YahooMarketData(**settings)  # type: ignore[arg-type]

    return make


def test_chosen_by_environment(monkeypatch):
    monkeypatch.setenv("SIGMASIGHT_MARKET_DATA", "yfinance")
    monkeypatch.setenv("YAHOO_REQUESTS_PER_MINUTE", "30")
    _provider.cache_clear()
    try:
        provider = MarketDataResource().get_provider()
        assert isinstance(provider, YahooMarketData) and isinstance(provider, MarketDataProvider)
        assert provider.limiter.requests_per_minute == 30
        assert YahooMarketData().limiter.requests_per_minute == 60  # the default
    finally:
        _provider.cache_clear()
    assert yahoo_ticker("BRK.B") == "BRK-B"


def test_adjusted_bars_for_the_wanted_days_only(yahoo, fake_yahoo):
    fake_yahoo.splits = {"AAPL": [(DAYS[12], 4.0, 1.0)]}  # a 4:1 split inside the range
    result = yahoo().fetch_bars(wanted(["AAPL", "MSFT", OPTION], DAYS[5:25]))
    bars = result.bars
    assert list(bars.columns) == BAR_COLUMNS and result.issues.empty and result.fatal is None
    assert set(bars["source"]) == {"yfinance"}
    for symbol in ("AAPL", "MSFT"):
        got = bars[bars["symbol"] == symbol]
        assert got["trade_date"].tolist() == DAYS[5:25]
        # Split-adjusted: the synthetic (continuous) path, though Yahoo's raw closes jump 4x.
        np.testing.assert_allclose(got["close"], synthetic_closes(symbol, DAYS[5:25]), rtol=1e-9)
    assert OPTION not in set(bars["symbol"])  # options: absent (model-priced downstream)
    charts = fake_yahoo.chart_requests()
    assert {r.path for r in charts} == {"/v8/finance/chart/AAPL", "/v8/finance/chart/MSFT"}
    history = [r for r in charts if "period1" in r.query]
    assert len(history) == 2  # one request per ticker for all its days
    assert {r.host for r in fake_yahoo.requests} <= {
        "fc.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com",
    }  # fmt: skip


def test_splits_come_from_the_chart_responses(yahoo, fake_yahoo):
    fake_yahoo.splits = {"AAPL": [(DAYS[12], 4.0, 1.0)], "MSFT": [(DAYS[20], 1.0, 10.0)]}
    p = yahoo()
    p.fetch_bars(wanted(["AAPL"], DAYS))
    served = len(fake_yahoo.requests)
    splits = p.splits(["AAPL", OPTION], DAYS[0], DAYS[-1])
    assert list(splits.itertuples(index=False, name=None)) == [("AAPL", DAYS[12], 1.0, 4.0)]
    assert len(fake_yahoo.requests) == served  # remembered from the bars' response
    reverse = p.splits(["MSFT"], DAYS[0], DAYS[-1])  # not fetched before: one request
    assert list(reverse.columns) == SPLIT_COLUMNS
    assert list(reverse.itertuples(index=False, name=None)) == [("MSFT", DAYS[20], 10.0, 1.0)]


def test_unknown_symbols_are_absent_not_failed(yahoo, fake_yahoo):
    fake_yahoo.unknown = {"ZZZZ", "QQQQ", "WWWW"}
    result = yahoo().fetch_bars(wanted(["AAPL", "ZZZZ", "QQQQ", "WWWW"], DAYS[:5]))
    assert set(result.bars["symbol"]) == {"AAPL"}
    assert result.issues.empty and result.fatal is None


def test_failures_are_issues_with_the_message_and_retries_name_the_call(yahoo, fake_yahoo, caplog):
    fake_yahoo.fail(429, match="/chart/AAPL?period1", retry_after="0.2")
    fake_yahoo.fail(503, times=100, match="/chart/MSFT")
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.yahoo"):
        result = yahoo(max_retries=2).fetch_bars(wanted(["AAPL", "MSFT"], DAYS[:10]))
    assert set(result.bars["symbol"]) == {"AAPL"} and len(result.bars) == 10
    failed = result.issues
    assert list(failed.columns) == ISSUE_COLUMNS
    assert set(failed["symbol"]) == {"MSFT"} and (failed["kind"] == "failed").all()
    detail = failed["detail"].iloc[0]
    assert detail.startswith("Yahoo daily bars for MSFT: MarketDataError")
    assert "3 attempts" in detail and "HTTP 503" in detail
    assert any("/v8/finance/chart/AAPL: HTTP 429" in m and "Retry-After 0.2s" in m
               for m in caplog.messages)  # fmt: skip
    assert result.fatal is None


def test_a_run_of_failures_stops_the_fetch_and_keeps_what_was_fetched(yahoo, fake_yahoo):
    for symbol in ("B1", "B2", "B3"):
        fake_yahoo.fail(500, times=100, match=f"/chart/{symbol}")
    result = yahoo(max_retries=0).fetch_bars(wanted(["A1", "B1", "B2", "B3", "C1", "C2"], DAYS[:3]))
    assert set(result.bars["symbol"]) == {"A1"}
    assert result.fatal is not None and "3 tickers in a row" in result.fatal
    failed = result.issues.groupby("symbol")["detail"].first()
    assert set(failed.index) == {"B1", "B2", "B3", "C1", "C2"}
    assert failed["C1"] == failed["C2"] == result.fatal
    assert not any("/C1" in r.path for r in fake_yahoo.requests)


def test_every_request_takes_a_slot_of_the_shared_limit(yahoo, fake_yahoo, db_url):
    symbols = [f"S{i:02d}" for i in range(8)]
    result = yahoo().fetch_bars(wanted(symbols, DAYS[:5]))
    assert len(result.bars) == 8 * 5
    with connect(db_url) as conn:
        (grants,) = conn.execute(
            "SELECT count(*) FROM sigmasight.rate_limit_log WHERE limiter = 'yfinance'"
        ).fetchone()
    assert grants == len(fake_yahoo.requests) > 8  # cookie, crumb, timezone, chart: all
    times = sorted(r.t for r in fake_yahoo.requests)
    most = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert most <= 10


def test_security_info_from_the_quote_summary_cached(yahoo, fake_yahoo, caplog):
    fake_yahoo.profiles = {"AAPL": ("Technology", "Consumer Electronics")}
    fake_yahoo.unknown = {"ZZZZ"}
    info = yahoo().security_info(["AAPL", "ZZZZ", OPTION])
    assert list(info.columns) == SECURITY_INFO_COLUMNS
    rows = info.set_index("symbol")
    assert tuple(rows.loc["AAPL"]) == ("Technology", "Consumer Electronics")
    assert rows.loc["ZZZZ"].isna().all() and rows.loc[OPTION].isna().all()
    served = len(fake_yahoo.requests)
    pd.testing.assert_frame_equal(yahoo().security_info(["AAPL", "ZZZZ", OPTION]), info)
    assert len(fake_yahoo.requests) == served  # from the database cache
    fake_yahoo.fail(500, times=100, match="quoteSummary")
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.yahoo"):
        more = yahoo(max_retries=0).security_info(["MSFT", "NVDA", "XOM"])
    assert more[["sector", "industry"]].isna().all().all()
    summary = [m for m in caplog.messages if "No sector/industry" in m]
    assert len(summary) == 1 and "3 symbol(s)" in summary[0]
    assert yahoo().short_interest(["AAPL"], DAYS).empty
