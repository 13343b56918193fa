"""The Polygon provider: the real massive client against a fake Polygon server on loopback.

Every provider here rate-limits through the database (the session's test database), so the
`polygon` fixture clears the limiter's log and the provider caches before each test.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import socket
import threading
import time
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from massive.rest.models import Agg

from sigmasight_pipeline.calendar import last_sessions
from sigmasight_pipeline.resources.database import connect
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    ISSUE_COLUMNS,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    SPLIT_COLUMNS,
    BarsResult,
    MarketDataProvider,
)
from sigmasight_pipeline.resources.polygon import (
    DEFAULT_REQUESTS_PER_MINUTE,
    GuardedPool,
    PolygonMarketData,
    backoff_delay,
    bars_from_aggs,
    parse_retry_after,
    plan_calls,
    polygon_ticker,
)
from sigmasight_pipeline.resources.polygon_reference import sector_from_sic
from sigmasight_pipeline.resources.rate_limit import SharedRateLimiter
from sigmasight_pipeline.resources.synthetic import SyntheticMarket
from sigmasight_pipeline_tests.fake_polygon import MISSING, FakePolygon

STOCKS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "JPM", "XOM", "SPY", "IWM"]
OPTIONS = ["AAPL251219C00200000", "MSFT251219P00400000"]
DAYS = [d.date() for d in last_sessions("2025-06-30", 90)]
CACHE_TABLES = (
    "provider_short_interest", "provider_short_interest_checks", "provider_free_float",
    "provider_security_info", "provider_splits", "provider_splits_checks",
)  # fmt: skip


def pairs(symbols: list[str], days: list[date]) -> pd.DataFrame:
    return pd.DataFrame([(s, d) for s in symbols for d in days], columns=["symbol", "trade_date"])


def expected_bars(wanted: pd.DataFrame) -> pd.DataFrame:
    bars = SyntheticMarket().daily_bars(wanted).assign(source="polygon")
    bars["volume"] = bars["volume"].astype(float)
    return bars.sort_values(["symbol", "trade_date"], ignore_index=True)[BAR_COLUMNS]


def clear_provider_state(url: str) -> None:
    with connect(url) as conn, conn.transaction():
        conn.execute("DELETE FROM sigmasight.rate_limit_log")
        for table in CACHE_TABLES:
            conn.execute(f"DELETE FROM sigmasight.{table}")


@pytest.fixture
def polygon(fake_polygon: FakePolygon, db_url: str):
    """make(**overrides) -> PolygonMarketData on the fake server: 600 requests/minute as 10 per
    1 s window, short timeouts and backoff, the session's database for limiter and caches.

    The margin is 0.25 s, not the default window / 60: a 1 s window keeps the tests short, but
    the jitter between a grant and the arrival at the server (this shared machine's scheduling,
    under a parallel test run) does not shrink with it; CI once saw 11 arrivals within 1 s with
    a 17 ms margin. The default's 1 s a minute is checked below."""
    clear_provider_state(db_url)

    def make(**kw: object) -> PolygonMarketData:
        settings: dict = {
            "database_url": db_url,
            "base_url": fake_polygon.url,
            "requests_per_minute": 600.0,
            "rate_window_seconds": 1.0,
            "rate_margin_seconds": 0.25,
            "connect_timeout": 1.0,
            "read_timeout": 0.5,
            "backoff_base": 0.01,
            "jitter": 0.01,
        }
        settings.update(kw)
        return PolygonMarketData("test-key", **settings)  # type: ignore[arg-type]

    return make


def data_requests(fake: FakePolygon) -> list[str]:
    return [r.path for r in fake.requests if r.status == 200 and r.fault is None]


def issues_of(result: BarsResult, kind: str) -> pd.DataFrame:
    return result.issues[result.issues["kind"] == kind]


# -- settings, backoff ---------------------------------------------------------------------


def test_default_rate_is_five_per_minute_shared_through_the_database(monkeypatch):
    monkeypatch.delenv("POLYGON_REQUESTS_PER_MINUTE", raising=False)
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    assert DEFAULT_REQUESTS_PER_MINUTE == 5
    for p in (PolygonMarketData("k"), PolygonMarketData.from_env()):
        assert isinstance(p.limiter, SharedRateLimiter)
        assert (p.limiter.max_requests, p.limiter.window_seconds) == (5, 60.0)
        assert p.limiter.margin_seconds == 1.0  # 5 grants per 61 s at the database clock
    monkeypatch.setenv("POLYGON_REQUESTS_PER_MINUTE", "120")
    assert PolygonMarketData.from_env().limiter.max_requests == 120
    # One budget per key, whatever process asks.
    assert PolygonMarketData("k").limiter.name == PolygonMarketData.from_env().limiter.name
    assert PolygonMarketData("k").limiter.name != PolygonMarketData("other").limiter.name
    assert isinstance(PolygonMarketData("k"), MarketDataProvider)


def test_backoff_is_exponential_jittered_and_capped_but_retry_after_is_not():
    assert backoff_delay(0, rng=lambda: 0.0) == 2.0
    assert backoff_delay(3, rng=lambda: 0.5) == 16.5
    assert all(2.0 <= backoff_delay(0) <= 3.0 for _ in range(50))
    assert backoff_delay(8, rng=lambda: 0.0) == 300.0  # 512 capped
    assert backoff_delay(1000) == 300.0
    assert backoff_delay(0, rng=lambda: 0.0, retry_after=30) == 30.0
    assert backoff_delay(0, rng=lambda: 0.0, retry_after=3600) == 3600.0  # the server's wish
    assert backoff_delay(2, base=0.01, cap=0.02, jitter=0.01, rng=lambda: 1.0) == 0.02


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date_header = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after(date_header, now=lambda: 1445412480.0) == 10.0
    assert parse_retry_after(date_header, now=lambda: 1445412500.0) == 0.0


def test_client_retries_are_disabled_and_every_request_is_guarded():
    p = PolygonMarketData("k")
    assert isinstance(p.client.client, GuardedPool)
    assert isinstance(p.client.vx.client, GuardedPool)
    assert p.client.client.limiter is p.limiter is p.client.vx.client.limiter
    assert p.client.client.pool.connection_pool_kw["retries"].total is False  # no retries
    timeout = p.client.client.pool.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (10.0, 30.0)
    policy = p.client.client.policy
    assert (policy.backoff_base, policy.backoff_cap, policy.max_call_seconds) == (2.0, 300, 7200)


def test_from_env_needs_a_key(monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    with pytest.raises(ValueError, match="POLYGON_API_KEY"):
        PolygonMarketData.from_env()
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    monkeypatch.setenv("POLYGON_REQUESTS_PER_MINUTE", "fast")
    with pytest.raises(ValueError, match="POLYGON_REQUESTS_PER_MINUTE"):
        PolygonMarketData.from_env()
    monkeypatch.setenv("POLYGON_REQUESTS_PER_MINUTE", "5")
    monkeypatch.setenv("POLYGON_MAX_CALL_SECONDS", "60")
    assert PolygonMarketData.from_env().policy.max_call_seconds == 60


# -- planner -------------------------------------------------------------------------------


def test_plan_few_days_many_tickers_is_grouped():
    tickers = [f"T{i:02d}" for i in range(50)]
    calls = plan_calls(pairs(tickers, DAYS[:3]))
    assert [c.kind for c in calls] == ["grouped"] * 3
    assert [c.start for c in calls] == DAYS[:3]
    assert all(set(c.symbols) == set(tickers) for c in calls)


def test_plan_many_days_few_tickers_is_per_ticker_ranges():
    calls = plan_calls(pairs(["AAPL", "BRK-B"], DAYS))
    assert [(c.kind, c.ticker, c.start, c.end) for c in calls] == [
        ("range", "AAPL", DAYS[0], DAYS[-1]),
        ("range", "BRK.B", DAYS[0], DAYS[-1]),
    ]


def test_plan_mixes_both_when_cheaper():
    dense = pairs(["AAPL", "MSFT", "NVDA"], DAYS)  # 3 tickers every day: 3 range calls
    sparse = pairs([f"T{i:02d}" for i in range(40)], DAYS[10:12])  # 40 tickers on 2 days
    calls = plan_calls(pd.concat([dense, sparse]))
    assert sorted((c.kind, c.ticker or str(c.start)) for c in calls) == [
        ("grouped", str(DAYS[10])),
        ("grouped", str(DAYS[11])),
        ("range", "AAPL"),
        ("range", "MSFT"),
        ("range", "NVDA"),
    ]  # 5 calls; all grouped would be 90, all range 43


def test_plan_is_a_minimum_cover_on_random_graphs():
    rng = random.Random(7)
    for _ in range(60):
        n_tickers, n_days = rng.randint(1, 7), rng.randint(1, 7)
        edges = {
            (f"S{t}", DAYS[d])
            for t in range(n_tickers)
            for d in range(n_days)
            if rng.random() < 0.45
        }
        if not edges:
            continue
        wanted = pd.DataFrame(sorted(edges), columns=["symbol", "trade_date"])
        calls = plan_calls(wanted)
        grouped = {c.start for c in calls if c.kind == "grouped"}
        ranged = {c.symbols[0] for c in calls if c.kind == "range"}
        assert all(d in grouped or s in ranged for s, d in edges)  # every pair covered
        days = sorted({d for _, d in edges})
        best = min(
            len(chosen) + len({s for s, d in edges if d not in chosen})
            for k in range(len(days) + 1)
            for chosen in map(set, itertools.combinations(days, k))
        )
        assert len(calls) == best


def test_plan_options_are_range_calls_on_o_tickers():
    wanted = pd.concat([pairs(OPTIONS[:1], DAYS[5:9]), pairs(OPTIONS[1:], [DAYS[0], DAYS[40]])])
    calls = plan_calls(pd.concat([wanted, pairs(["AAPL"], DAYS[:1])]))
    assert [(c.kind, c.ticker, c.start, c.end) for c in calls] == [
        ("range", "AAPL", DAYS[0], DAYS[0]),
        ("range", "O:AAPL251219C00200000", DAYS[5], DAYS[8]),
        ("range", "O:MSFT251219P00400000", DAYS[0], DAYS[40]),
    ]
    assert polygon_ticker("aapl251219c00200000") == "O:AAPL251219C00200000"
    assert plan_calls(pairs([], [])) == []


# -- timestamps ----------------------------------------------------------------------------


def test_range_timestamps_are_new_york_session_dates():
    sessions = ["2024-03-08", "2024-03-11", "2024-11-01", "2024-11-04"]  # around both DST shifts
    stamps = [int(pd.Timestamp(d, tz="America/New_York").timestamp() * 1000) for d in sessions]
    aggs = [Agg(1.0, 2.0, 0.5, 1.5, 100.0, 1.2, t, 3) for t in stamps]
    bars = bars_from_aggs("AAPL", aggs)
    assert list(bars["trade_date"]) == [date.fromisoformat(d) for d in sessions]
    assert list(bars.columns) == BAR_COLUMNS
    assert set(bars["source"]) == {"polygon"}


# -- the real client against the fake server: retries and the rate ------------------------


def test_backfill_survives_faults_and_respects_the_rate(polygon, fake_polygon, caplog):
    fake = fake_polygon
    fake.fail(429, times=3, retry_after="0.3")
    fake.fail(500, times=1, match="/NVDA/")
    fake.fail(503, times=1, match="O:MSFT")
    fake.slow(1.0, match="/JPM/")  # longer than the 0.5 s read timeout
    fake.malformed(match="/XOM/")
    fake.soft_error(match="/GOOGL/")  # 200 {"status": "ERROR"}: retried like a 5xx
    wanted = pairs(STOCKS + OPTIONS, DAYS)
    p = polygon()
    assert len(p.plan(wanted)) == 12  # 10 stock + 2 option range calls beat 90 grouped calls

    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        result = p.fetch_bars(wanted)

    pd.testing.assert_frame_equal(result.bars, expected_bars(wanted))
    assert result.issues.empty and result.fatal is None
    assert len(result.bars) == 12 * 90
    faults = [str(r.status) if r.fault == "status" else r.fault for r in fake.requests if r.fault]
    assert sorted(faults) == ["429", "429", "429", "500", "503", "malformed", "slow", "soft_error"]
    assert len(data_requests(fake)) == 12
    assert len(fake.requests) == 12 + 8
    assert any("Retry-After 0.3s" in m for m in caplog.messages)
    assert any("daily bars for GOOGL" in m and '"status": "ERROR"' in m for m in caplog.messages)
    # 10 per 1 s window (+ 0.25 s margin): never more than 10 in any 1 s window at the server,
    # retries included.
    assert fake.max_in_window(1.0) <= 10


def test_soft_error_that_persists_is_failed_not_no_data(polygon, fake_polygon):
    fake = fake_polygon
    fake.soft_error(times=100, match="/MSFT/")
    result = polygon(max_retries=2).fetch_bars(pairs(["AAPL", "MSFT"], DAYS[:20]))
    assert set(result.bars["symbol"]) == {"AAPL"} and len(result.bars) == 20
    failed = issues_of(result, "failed")
    assert list(failed.columns) == ISSUE_COLUMNS
    assert set(failed["symbol"]) == {"MSFT"} and len(failed) == 20
    assert failed["detail"].str.contains(r"MSFT.*3 attempts.*status.*ERROR.*Internal error").all()
    assert all(isinstance(d, date) for d in failed["trade_date"])


def test_retry_after_is_honoured(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(429, retry_after="1")
    bars = polygon().daily_bars(pairs(["AAPL"], DAYS[:3]))
    assert len(bars) == 3
    first, second = fake.requests
    assert first.status == 429 and second.status == 200
    assert second.t - first.t >= 1.0


class RecordedSleep:
    """A sleep that only records (and advances a clock), for hour-long waits in tests."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_a_long_retry_after_is_waited_in_full_once(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(429, retry_after="3600")
    sleep = RecordedSleep()
    result = polygon(sleep=sleep, clock=sleep.clock).fetch_bars(pairs(["AAPL"], DAYS[:3]))
    assert len(result.bars) == 3 and result.issues.empty
    assert sleep.waits == [3600.0]  # not eight capped 300 s retries that all hit the 429
    assert [r.status for r in fake.requests] == [429, 200]


def test_a_retry_after_beyond_the_time_limit_fails_the_call_at_once(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(429, retry_after="3600", match="/MSFT/")
    sleep = RecordedSleep()
    p = polygon(sleep=sleep, clock=sleep.clock, max_call_seconds=600)
    result = p.fetch_bars(pairs(["AAPL", "MSFT"], DAYS[:30]))
    assert set(result.bars["symbol"]) == {"AAPL"}
    failed = issues_of(result, "failed")
    assert set(failed["symbol"]) == {"MSFT"}
    detail = failed["detail"].iloc[0]
    assert "daily bars for MSFT" in detail and "3600" in detail and "600s limit" in detail
    assert sleep.waits == []
    assert sum("/MSFT/" in r.path for r in fake.requests) == 1


def test_backoff_is_capped_in_the_client(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(500, times=4)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    p = polygon(backoff_base=100.0, backoff_cap=0.05, sleep=sleep)
    assert len(p.daily_bars(pairs(["AAPL"], DAYS[:2]))) == 2
    assert len(waits) == 4 and max(waits) <= 0.05


def test_gives_up_after_max_retries_naming_the_call(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(502, times=100)
    result = polygon(max_retries=2).fetch_bars(pairs(["AAPL"], DAYS[:2]))
    assert result.bars.empty and result.fatal is None
    assert issues_of(result, "failed")["detail"].str.contains(r"AAPL.*3 attempts.*HTTP 502").all()
    assert len(fake.requests) == 3


# -- partial failure keeps what succeeded --------------------------------------------------


def test_a_failed_call_keeps_the_other_calls_bars(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(500, times=100, match="/NVDA/")
    fake.fail(404, match="/JPM/")  # not retryable, still only this call
    wanted = pairs(["AAPL", "NVDA", "JPM", "XOM"], DAYS)
    result = polygon(max_retries=1).fetch_bars(wanted)
    assert set(result.bars["symbol"]) == {"AAPL", "XOM"} and len(result.bars) == 2 * 90
    failed = issues_of(result, "failed")
    assert failed.groupby("symbol").size().to_dict() == {"JPM": 90, "NVDA": 90}
    assert failed.loc[failed["symbol"] == "JPM", "detail"].str.contains("HTTP 404").all()
    assert failed.loc[failed["symbol"] == "NVDA", "detail"].str.contains("HTTP 500").all()
    assert result.fatal is None


def test_options_outside_the_plan_fail_alone_and_stocks_still_price(polygon, fake_polygon):
    fake = fake_polygon
    fake.options_forbidden = True
    options = [*OPTIONS, "NVDA251219C00150000"]
    wanted = pairs(["AAPL", "MSFT", *options], DAYS[:20])
    result = polygon().fetch_bars(wanted)
    pd.testing.assert_frame_equal(result.bars, expected_bars(pairs(["AAPL", "MSFT"], DAYS[:20])))
    failed = issues_of(result, "failed")
    assert set(failed["symbol"]) == set(options) and len(failed) == 3 * 20
    (reason,) = set(failed["detail"])  # one line, one cause
    assert "options" in reason and "plan" in reason and "NOT_AUTHORIZED" in reason
    assert "\n" not in reason
    assert result.fatal is None
    # The plan answer is not asked again for every contract.
    assert sum(r.path.startswith("/v2/aggs/ticker/O:") for r in fake.requests) == 1


def test_a_bad_key_stops_with_one_line_and_keeps_what_was_fetched(polygon, fake_polygon):
    fake = fake_polygon
    fake.fail(401, match="/MSFT/")
    wanted = pairs(["AAPL", "MSFT", "NVDA"], DAYS[:30])
    result = polygon().fetch_bars(wanted)
    assert set(result.bars["symbol"]) == {"AAPL"} and len(result.bars) == 30
    assert result.fatal is not None and "\n" not in result.fatal
    assert result.fatal.startswith("Polygon rejected POLYGON_API_KEY (HTTP 401")
    assert "Unknown API Key" in result.fatal and "check the key" in result.fatal
    failed = issues_of(result, "failed")
    assert failed.groupby("symbol").size().to_dict() == {"MSFT": 30, "NVDA": 30}
    assert (failed["detail"] == result.fatal).all()
    assert not any("/NVDA/" in r.path for r in fake.requests)  # stopped: NVDA never asked


def test_wrong_key_is_a_clear_fatal_line(fake_polygon, db_url):
    clear_provider_state(db_url)
    p = PolygonMarketData(
        "wrong", base_url=fake_polygon.url, database_url=db_url, requests_per_minute=6000
    )
    result = p.fetch_bars(pairs(["AAPL"], DAYS[:1]))
    assert result.fatal == (
        "Polygon rejected POLYGON_API_KEY (HTTP 401: Unknown API Key): check the key "
        "(POLYGON_API_KEY) at polygon.io/dashboard"
    )
    assert result.bars.empty and len(result.issues) == 1


def test_a_plan_without_stock_bars_is_fatal_and_not_retried(polygon, fake_polygon):
    fake = fake_polygon
    fake.universe = STOCKS
    fake.fail(403, match="/grouped/")
    result = polygon().fetch_bars(pairs(STOCKS, DAYS[:3]))
    assert result.fatal is not None
    assert "grouped daily bars" in result.fatal and "plan" in result.fatal
    assert "HTTP 403 NOT_AUTHORIZED" in result.fatal
    assert len(fake.requests) == 1  # neither retried nor followed by the other days
    assert len(issues_of(result, "failed")) == len(STOCKS) * 3


# -- bad bars are never market prices -----------------------------------------------------


@pytest.mark.parametrize("grouped", [False, True], ids=["range", "grouped"])
def test_bad_closes_are_rejected_with_their_value(polygon, fake_polygon, grouped):
    fake = fake_polygon
    symbols = ["AAPL", "MSFT", "NVDA", "JPM"] if grouped else ["AAPL", "MSFT"]
    fake.universe = symbols
    days = DAYS[:3] if grouped else DAYS[:30]
    planted = {
        ("AAPL", days[0]): 0.0,
        ("AAPL", days[1]): -3.5,
        ("MSFT", days[0]): math.nan,
        ("MSFT", days[1]): math.inf,
        ("MSFT", days[2]): MISSING,
    }
    for (symbol, day), close in planted.items():
        fake.bad_close(symbol, day, close)
    wanted = pairs(symbols, days)
    result = polygon().fetch_bars(wanted)
    assert {c.kind for c in polygon().plan(wanted)} == {"grouped" if grouped else "range"}

    good = expected_bars(wanted)
    good = good[~good.set_index(["symbol", "trade_date"]).index.isin(planted)]
    pd.testing.assert_frame_equal(result.bars, good.reset_index(drop=True))
    assert (result.bars["close"] > 0).all()
    rejected = issues_of(result, "rejected").set_index(["symbol", "trade_date"])["detail"]
    assert set(rejected.index) == set(planted)
    assert "close 0.0 is not a positive finite price" in rejected[("AAPL", days[0])]
    assert "close -3.5 is not" in rejected[("AAPL", days[1])]
    assert "close missing or NaN" in rejected[("MSFT", days[0])]
    assert "close inf is not" in rejected[("MSFT", days[1])]
    assert "close missing or NaN" in rejected[("MSFT", days[2])]
    assert all(d.startswith("Polygon ") for d in rejected)


def test_conflicting_duplicates_are_rejected_identical_ones_collapse(polygon, fake_polygon):
    fake = fake_polygon
    wanted = pairs(["AAPL", "MSFT"], DAYS[:10])
    truth = expected_bars(wanted).set_index(["symbol", "trade_date"])["close"]
    fake.conflicting_bar("AAPL", DAYS[3], 123.45)
    fake.conflicting_bar("MSFT", DAYS[4], float(truth[("MSFT", DAYS[4])]))  # identical twin
    result = polygon().fetch_bars(wanted)
    assert len(result.bars) == 19
    assert not result.bars.duplicated(["symbol", "trade_date"]).any()
    (issue,) = issues_of(result, "rejected").itertuples()
    assert (issue.symbol, issue.trade_date) == ("AAPL", DAYS[3])
    assert "2 different bars" in issue.detail and "123.45" in issue.detail
    assert repr(float(truth[("AAPL", DAYS[3])])) in issue.detail


def test_empty_days_and_delisted_symbols_are_absent_not_issues(polygon, fake_polygon):
    fake = fake_polygon
    fake.universe = STOCKS
    fake.empty_days = {DAYS[40]}
    fake.delisted = {"XOM": DAYS[50]}
    wanted = pairs(["AAPL", "XOM"], DAYS)
    result = polygon().fetch_bars(wanted)
    assert result.issues.empty and result.fatal is None
    aapl = result.bars.loc[result.bars["symbol"] == "AAPL", "trade_date"]
    xom = result.bars.loc[result.bars["symbol"] == "XOM", "trade_date"]
    assert list(aapl) == [d for d in DAYS if d != DAYS[40]]
    assert list(xom) == [d for d in DAYS[:51] if d != DAYS[40]]
    grouped = polygon().fetch_bars(pairs(STOCKS, [DAYS[40], DAYS[41]]))
    assert set(grouped.bars["trade_date"]) == {DAYS[41]} and grouped.issues.empty


# -- what the provider already has is never asked again ----------------------------------


def test_stored_pairs_are_never_requested(polygon, fake_polygon):
    fake = fake_polygon
    fake.universe = STOCKS
    p = polygon()

    # Everything stored but the last 5 sessions: 5 grouped calls beat 10 range calls.
    wanted = pairs(STOCKS, DAYS[-5:])
    bars = p.daily_bars(wanted)
    pd.testing.assert_frame_equal(bars, expected_bars(wanted))
    grouped = sorted(path.rsplit("/", 1)[1] for path in data_requests(fake))
    assert grouped == [d.isoformat() for d in DAYS[-5:]]
    assert len(fake.requests) == 5

    # AAPL is missing two days, MSFT is complete: one AAPL range call, filtered to 2 rows.
    fake.log.clear()
    holes = pairs(["AAPL"], [DAYS[10], DAYS[20]])
    bars = p.daily_bars(holes)
    pd.testing.assert_frame_equal(bars, expected_bars(holes))
    assert data_requests(fake) == [
        f"/v2/aggs/ticker/AAPL/range/1/day/{DAYS[10].isoformat()}/{DAYS[20].isoformat()}"
    ]
    assert not any("MSFT" in r.path for r in fake.requests)

    fake.log.clear()
    empty = p.fetch_bars(pairs([], []))
    assert empty.bars.columns.tolist() == BAR_COLUMNS
    assert empty.issues.columns.tolist() == ISSUE_COLUMNS
    assert fake.requests == []


def test_unknown_ticker_is_absent_without_error(polygon, fake_polygon):
    fake = fake_polygon
    fake.unknown = {"ZZZZ", "ZZZZ251219C00010000"}
    fake.universe = ["AAPL", "MSFT"]
    p = polygon()
    by_range = p.fetch_bars(pairs(["AAPL", "ZZZZ", "ZZZZ251219C00010000"], DAYS[:30]))
    assert set(by_range.bars["symbol"]) == {"AAPL"} and len(by_range.bars) == 30
    assert by_range.issues.empty
    tickers = ["AAPL", "MSFT", "ZZZZ"]
    by_grouped = p.fetch_bars(pairs(tickers, DAYS[:2]))
    assert set(by_grouped.bars["symbol"]) == {"AAPL", "MSFT"} and len(by_grouped.bars) == 4
    assert by_grouped.issues.empty


def test_pagination_retries_only_the_failing_page(polygon, fake_polygon):
    fake = fake_polygon
    fake.page_size = 40
    fake.fail(500, match="cursor=")  # the second page fails once
    wanted = pairs(["AAPL"], DAYS)
    pd.testing.assert_frame_equal(polygon().daily_bars(wanted), expected_bars(wanted))
    statuses = [r.status for r in fake.requests]
    assert statuses == [200, 500, 200, 200]  # pages 1, 2 (failed), 2, 3; page 1 not refetched


def test_a_rerun_of_a_complete_backfill_asks_polygon_nothing(polygon, fake_polygon):
    fake = fake_polygon
    stocks = ["AAPL", "MSFT", "NVDA", "JPM"]
    symbols = [*stocks, "SPY", OPTIONS[0]]
    days = DAYS[-60:]
    wanted = pairs(symbols, days)

    def run(p: PolygonMarketData, wanted: pd.DataFrame) -> tuple:
        fetched = p.fetch_bars(wanted)
        return (
            fetched,
            p.short_interest(stocks, days),
            p.security_info(symbols),
            p.splits(symbols, days[0], days[-1]),
        )

    first = run(polygon(), wanted)
    assert first[0].issues.empty and len(first[0].bars) == len(wanted)
    assert len(fake.requests) > 0
    served = len(fake.requests)
    # A new run (a new process: a fresh provider) asks for what is not stored (nothing) and
    # the same reference data: Polygon hears nothing.
    stored = first[0].bars[["symbol", "trade_date"]]
    missing = wanted.merge(stored, how="left", indicator=True).query("_merge == 'left_only'")
    again = run(polygon(), missing[["symbol", "trade_date"]])
    assert len(fake.requests) == served, [r.path for r in fake.requests[served:]]
    for before, after in zip(first[1:], again[1:], strict=True):
        pd.testing.assert_frame_equal(before, after)
    # The same provider asked twice the identical way: nothing either.
    p = polygon()
    run(p, pairs([], []))
    assert len(fake.requests) == served


# -- short interest ------------------------------------------------------------------------


def test_short_interest_is_as_of_the_latest_settlement(polygon, fake_polygon):
    fake = fake_polygon
    fake.unknown = {"ZZZZ"}
    days = DAYS[-30:]
    si = polygon().short_interest(["AAPL", "MSFT", "ZZZZ", OPTIONS[0]], days)
    assert list(si.columns) == SHORT_INTEREST_COLUMNS
    assert set(si["symbol"]) == {"AAPL", "MSFT"}
    assert len(si) == 60
    paths = [r.path for r in fake.requests]
    assert paths.count("/stocks/v1/short-interest") == 3  # options skipped
    for symbol, rows in si.groupby("symbol"):
        records = fake.expected_short_interest(symbol, date(2025, 1, 1), days[-1])
        shares = fake.free_float(symbol)
        for row in rows.itertuples():
            latest = max(
                (r for r in records if r.settlement_date <= row.trade_date),
                key=lambda r: r.settlement_date,
            )
            assert row.days_to_cover == latest.days_to_cover
            assert row.short_interest_pct_float == pytest.approx(
                100 * latest.short_interest / shares
            )


def test_short_interest_is_fetched_once_per_settlement(polygon, fake_polygon):
    fake = fake_polygon
    p = polygon()
    first = p.short_interest(["AAPL", "MSFT"], DAYS[-30:])
    asked = [r for r in fake.requests if r.path == "/stocks/v1/short-interest"]
    assert len(asked) == 2
    fake.log.clear()
    # The same days again, a sub-range, and a fresh provider: all from the cache.
    pd.testing.assert_frame_equal(polygon().short_interest(["AAPL", "MSFT"], DAYS[-30:]), first)
    part = p.short_interest(["AAPL"], DAYS[-10:])
    expected = first[first["symbol"].eq("AAPL") & first["trade_date"].isin(DAYS[-10:])]
    pd.testing.assert_frame_equal(part, expected.reset_index(drop=True))
    assert fake.requests == []
    # An earlier range needs earlier settlements: one call per symbol, then cached too.
    p.short_interest(["AAPL", "MSFT"], DAYS[:10])
    assert [r.path for r in fake.requests].count("/stocks/v1/short-interest") == 2
    fake.log.clear()
    p.short_interest(["AAPL", "MSFT"], DAYS)
    assert fake.requests == []


def test_short_interest_is_asked_once_per_published_settlement(polygon, fake_polygon):
    """Day by day: a settlement is asked for once it can be published (8 business days after
    it), then never again; a symbol with no data is final once asked late enough."""
    fake = fake_polygon
    fake.unknown = {"ZZZZ"}
    days = [d for d in DAYS if d <= date(2025, 6, 30)][-20:]
    clock = {"now": datetime(2025, 7, 1, 22, tzinfo=UTC)}
    p = polygon(now=lambda: clock["now"])

    def asked(when: datetime) -> list[str]:
        clock["now"] = when
        fake.today = when.date()
        fake.log.clear()
        p.short_interest(["AAPL", "ZZZZ"], days)
        return sorted(r.query["ticker"] for r in fake.requests if "short" in r.path)

    assert asked(datetime(2025, 7, 1, 22, tzinfo=UTC)) == ["AAPL", "ZZZZ"]
    assert asked(datetime(2025, 7, 2, 8, tzinfo=UTC)) == []  # within 12 h: nothing
    assert asked(datetime(2025, 7, 2, 22, tzinfo=UTC)) == ["ZZZZ"]  # may still be published
    assert asked(datetime(2025, 7, 8, 22, tzinfo=UTC)) == ["ZZZZ"]
    assert asked(datetime(2025, 7, 9, 22, tzinfo=UTC)) == []  # ZZZZ final: none for June 13
    # The June 30 settlement is published on July 10 (7th business day): asked once, then kept.
    assert asked(datetime(2025, 7, 11, 22, tzinfo=UTC)) == ["AAPL", "ZZZZ"]
    assert asked(datetime(2025, 7, 14, 22, tzinfo=UTC)) == ["ZZZZ"]
    si = p.short_interest(["AAPL"], days)
    assert si["trade_date"].max() == date(2025, 6, 30)
    latest = fake.expected_short_interest("AAPL", date(2025, 6, 30), date(2025, 6, 30))[0]
    assert si["days_to_cover"].iloc[-1] == latest.days_to_cover


def test_short_interest_retries_name_the_ticker_and_failures_are_asked_again(
    polygon, fake_polygon, caplog
):
    fake = fake_polygon
    fake.fail(500, times=1, match="ticker=AAPL")
    fake.fail(500, times=100, match="ticker=MSFT")
    p = polygon(max_retries=2)
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        si = p.short_interest(["AAPL", "MSFT"], DAYS[-5:])
    assert set(si["symbol"]) == {"AAPL"}
    retries = [m for m in caplog.messages if "retry" in m]
    assert any("short interest for AAPL" in m for m in retries)
    assert any("short interest for MSFT" in m for m in retries)
    fake.faults.clear()
    fake.log.clear()
    si = p.short_interest(["AAPL", "MSFT"], DAYS[-5:])
    assert set(si["symbol"]) == {"AAPL", "MSFT"}
    assert [r.query.get("ticker") for r in fake.requests if "short" in r.path] == ["MSFT"]


def test_short_interest_without_float_leaves_pct_nan(polygon, fake_polygon, caplog):
    fake = fake_polygon
    fake.fail(403, match="/float")
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        si = polygon().short_interest(["AAPL"], DAYS[-5:])
    assert len(si) == 5
    assert si["short_interest_pct_float"].isna().all()
    assert si["days_to_cover"].notna().all()
    assert any("free float" in m for m in caplog.messages)


# -- sector and industry from Polygon's ticker details, never yfinance --------------------


def test_security_info_comes_from_ticker_details(polygon, fake_polygon):
    fake = fake_polygon
    fake.unknown = {"ZZZZ"}
    fake.details["MSFT"] = {"ticker": "MSFT", "type": "CS", "sic_code": "7372",
                            "sic_description": "SERVICES-PREPACKAGED SOFTWARE"}  # fmt: skip
    fake.details["JNJ"] = {"ticker": "JNJ", "type": "CS", "sic_code": "2834",
                           "sic_description": "PHARMACEUTICAL PREPARATIONS"}  # fmt: skip
    fake.details["WEIRD"] = {"ticker": "WEIRD", "type": "CS", "sic_code": "9995",
                             "sic_description": "NON-OPERATING ESTABLISHMENTS"}  # fmt: skip
    symbols = ["MSFT", "JNJ", "SPY", "WEIRD", "ZZZZ", OPTIONS[0]]
    p = polygon()
    info = p.security_info(symbols)
    assert list(info.columns) == SECURITY_INFO_COLUMNS
    assert info["symbol"].tolist() == symbols
    rows = info.set_index("symbol")
    assert tuple(rows.loc["MSFT"]) == ("Information Technology", "SERVICES-PREPACKAGED SOFTWARE")
    assert tuple(rows.loc["JNJ"]) == ("Health Care", "PHARMACEUTICAL PREPARATIONS")
    assert tuple(rows.loc["SPY"]) == ("ETF", "Exchange Traded Fund")
    assert rows.loc["WEIRD", "sector"] == "Nonclassifiable Establishments"  # the SIC division
    assert rows.loc["ZZZZ"].isna().all() and rows.loc[OPTIONS[0]].isna().all()
    details = [r.path for r in fake.requests if r.path.startswith("/v3/reference/tickers/")]
    assert sorted(details) == sorted(f"/v3/reference/tickers/{s}" for s in symbols[:5])
    fake.log.clear()
    pd.testing.assert_frame_equal(p.security_info(symbols), info)  # in-process
    pd.testing.assert_frame_equal(polygon().security_info(symbols), info)  # the database
    assert fake.requests == []


def test_sic_to_sector():
    assert sector_from_sic("3674") == "Information Technology"
    assert sector_from_sic("2834") == "Health Care"
    assert sector_from_sic("2844") == "Consumer Staples"
    assert sector_from_sic("2800") == "Materials"
    assert sector_from_sic("6798") == "Real Estate"
    assert sector_from_sic("6021") == "Financials"
    assert sector_from_sic("4911") == "Utilities"
    assert sector_from_sic("3711") == "Consumer Discretionary"
    assert sector_from_sic("3721") == "Industrials"
    assert sector_from_sic("8111") == "Services"  # legal services: the division
    assert sector_from_sic(None) is None and sector_from_sic("") is None


def test_security_info_failures_are_one_line_and_never_block(polygon, fake_polygon, caplog):
    fake = fake_polygon
    fake.fail(500, times=1000, match="/v3/reference/tickers/")
    symbols = [f"T{i:02d}" for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        info = polygon(max_retries=8).security_info(symbols)
    assert info[["sector", "industry"]].isna().all().all()
    assert len(fake.requests) == 2  # one lookup and its one retry; the rest not attempted
    summary = [m for m in caplog.messages if "No sector/industry" in m]
    assert len(summary) == 1 and "30 symbol(s)" in summary[0] and "HTTP 500" in summary[0]
    assert len(caplog.messages) <= 2  # the retry line and the summary, not one per symbol


class LoopbackProxy:
    """Records the first request line of each connection and answers 403."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.lines.append(conn.recv(4096).decode(errors="replace").split("\r\n")[0])
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")


def test_polygon_mode_never_asks_yahoo(polygon, fake_polygon, monkeypatch):
    proxy = LoopbackProxy()
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    try:
        info = polygon().security_info(["AAPL", "MSFT"])
    finally:
        proxy.sock.close()
    assert info["sector"].notna().all()
    assert proxy.lines == []  # yfinance (libcurl) would have gone through the proxy


# -- splits --------------------------------------------------------------------------------


def test_splits_come_from_the_splits_reference_and_are_cached(polygon, fake_polygon):
    fake = fake_polygon
    fake.split_events = [
        ("NVDA", date(2024, 6, 10), 1, 10),
        ("AAPL", date(2020, 8, 31), 1, 4),
        ("BRK.B", date(2025, 3, 3), 1, 2),
        ("OTHER", date(2024, 6, 11), 2, 1),
    ]
    p = polygon()
    got = p.splits(
        ["NVDA", "AAPL", "BRK-B", "MSFT", OPTIONS[0]], date(2024, 1, 2), date(2025, 6, 30)
    )
    assert list(got.columns) == SPLIT_COLUMNS
    assert got.to_dict("records") == [
        {"symbol": "BRK-B", "execution_date": date(2025, 3, 3), "split_from": 1.0, "split_to": 2.0},
        {
            "symbol": "NVDA",
            "execution_date": date(2024, 6, 10),
            "split_from": 1.0,
            "split_to": 10.0,
        },
    ]
    assert [r.path for r in fake.requests] == ["/v3/reference/splits"]
    fake.log.clear()
    pd.testing.assert_frame_equal(
        polygon().splits(["NVDA", "BRK-B"], date(2024, 1, 2), date(2025, 6, 30)), got
    )
    assert fake.requests == []
    assert p.splits([OPTIONS[0]], date(2024, 1, 2), date(2025, 6, 30)).empty


def test_splits_failure_is_logged_and_empty(polygon, fake_polygon, caplog):
    fake = fake_polygon
    fake.fail(500, times=100, match="/v3/reference/splits")
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        got = polygon(max_retries=1).splits(["NVDA"], date(2024, 1, 2), date(2024, 12, 31))
    assert got.empty and list(got.columns) == SPLIT_COLUMNS
    assert any("splits executed from 2024-01-02" in m for m in caplog.messages)
