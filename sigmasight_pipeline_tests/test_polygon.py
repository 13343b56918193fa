"""The Polygon provider: the real massive client against a fake Polygon server on loopback."""

from __future__ import annotations

import itertools
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date

import pandas as pd
import pytest
from massive.rest.models import Agg

from sigmasight_pipeline.calendar import last_sessions
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    MarketDataError,
)
from sigmasight_pipeline.resources.polygon import (
    DEFAULT_REQUESTS_PER_MINUTE,
    GuardedPool,
    PolygonMarketData,
    TokenBucket,
    backoff_delay,
    bars_from_aggs,
    parse_retry_after,
    plan_calls,
    polygon_ticker,
)
from sigmasight_pipeline.resources.synthetic import SyntheticMarket
from sigmasight_pipeline_tests.fake_polygon import FakePolygon

STOCKS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "JPM", "XOM", "SPY", "IWM"]
OPTIONS = ["AAPL251219C00200000", "MSFT251219P00400000"]
DAYS = [d.date() for d in last_sessions("2025-06-30", 90)]
FAST_RATE = 600.0  # requests/minute in tests: one every 0.1 s


def pairs(symbols: list[str], days: list[date]) -> pd.DataFrame:
    return pd.DataFrame([(s, d) for s in symbols for d in days], columns=["symbol", "trade_date"])


def expected_bars(wanted: pd.DataFrame) -> pd.DataFrame:
    bars = SyntheticMarket().daily_bars(wanted).assign(source="polygon")
    bars["volume"] = bars["volume"].astype(float)
    return bars.sort_values(["symbol", "trade_date"], ignore_index=True)[BAR_COLUMNS]


def provider(fake: FakePolygon, **kw: object) -> PolygonMarketData:
    settings: dict = {
        "base_url": fake.url,
        "requests_per_minute": FAST_RATE,
        "connect_timeout": 1.0,
        "read_timeout": 0.5,
        "backoff_base": 0.01,
        "jitter": 0.01,
    }
    settings.update(kw)
    return PolygonMarketData("test-key", **settings)  # type: ignore[arg-type]


def data_requests(fake: FakePolygon) -> list[str]:
    return [r.path for r in fake.requests if r.status == 200 and r.fault is None]


# -- token bucket and backoff --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_window(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + seconds) for t in times)


def test_default_rate_is_five_per_minute_in_any_sliding_window(monkeypatch):
    monkeypatch.delenv("POLYGON_REQUESTS_PER_MINUTE", raising=False)
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    assert DEFAULT_REQUESTS_PER_MINUTE == 5
    assert PolygonMarketData("k").bucket.rate_per_minute == 5
    assert PolygonMarketData.from_env().bucket.rate_per_minute == 5
    monkeypatch.setenv("POLYGON_REQUESTS_PER_MINUTE", "120")
    assert PolygonMarketData.from_env().bucket.rate_per_minute == 120

    clock = FakeClock()
    bucket = TokenBucket(DEFAULT_REQUESTS_PER_MINUTE, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(16):
        bucket.acquire()
        times.append(clock.now)
    assert times[:3] == [0.0, 12.0, 24.0]
    assert max_in_window(times, 60.0) == 5


def test_bucket_capacity_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(60, capacity=3, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(6):
        bucket.acquire()
        times.append(clock.now)
    assert times == pytest.approx([0, 0, 0, 1, 2, 3])


def test_bucket_is_thread_safe():
    # With time frozen, every acquire reserves the next free slot: 8 threads x 50 acquires
    # must get each of the 400 slots (0, 0.1, 0.2, ... s of waiting) exactly once.
    bucket = TokenBucket(600, clock=lambda: 0.0, sleep=lambda _: None)
    waits: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [bucket.acquire() for _ in range(50)]
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([i * 0.1 for i in range(400)])


def test_backoff_is_exponential_jittered_and_capped():
    assert backoff_delay(0, rng=lambda: 0.0) == 2.0
    assert backoff_delay(3, rng=lambda: 0.5) == 16.5
    assert all(2.0 <= backoff_delay(0) <= 3.0 for _ in range(50))
    assert backoff_delay(8, rng=lambda: 0.0) == 300.0  # 512 capped
    assert backoff_delay(1000) == 300.0
    assert backoff_delay(0, rng=lambda: 0.0, retry_after=30) == 30.0
    assert backoff_delay(0, rng=lambda: 0.0, retry_after=10_000) == 300.0
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
    assert p.client.client.bucket is p.bucket is p.client.vx.client.bucket
    assert p.client.client.pool.connection_pool_kw["retries"].total is False  # no retries
    timeout = p.client.client.pool.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (10.0, 30.0)
    assert (p.client.client.backoff_base, p.client.client.backoff_cap) == (2.0, 300.0)


def test_from_env_needs_a_key(monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    with pytest.raises(ValueError, match="POLYGON_API_KEY"):
        PolygonMarketData.from_env()
    monkeypatch.setenv("POLYGON_API_KEY", "k")
    monkeypatch.setenv("POLYGON_REQUESTS_PER_MINUTE", "fast")
    with pytest.raises(ValueError, match="POLYGON_REQUESTS_PER_MINUTE"):
        PolygonMarketData.from_env()


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


# -- the real client against the fake server -----------------------------------------------


def test_backfill_survives_faults_and_respects_the_rate(fake_polygon, caplog):
    fake = fake_polygon
    fake.fail(429, times=3, retry_after="0.3")
    fake.fail(500, times=1, match="/NVDA/")
    fake.fail(503, times=1, match="O:MSFT")
    fake.slow(1.0, match="/JPM/")  # longer than the 0.5 s read timeout
    fake.malformed(match="/XOM/")
    wanted = pairs(STOCKS + OPTIONS, DAYS)
    p = provider(fake)
    assert len(p.plan(wanted)) == 12  # 10 stock + 2 option range calls beat 90 grouped calls

    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        bars = p.daily_bars(wanted)

    pd.testing.assert_frame_equal(bars, expected_bars(wanted))
    assert len(bars) == 12 * 90
    faults = [str(r.status) if r.fault == "status" else r.fault for r in fake.requests if r.fault]
    assert sorted(faults) == ["429", "429", "429", "500", "503", "malformed", "slow"]
    assert len(data_requests(fake)) == 12
    assert len(fake.requests) == 12 + 7
    assert any("Retry-After 0.3s" in m for m in caplog.messages)
    # 600/minute = 10 per second: never more than 10 requests in any one-second window
    # (shortened by 0.1 s for scheduling jitter at the server), retries included.
    assert fake.max_in_window(0.9) <= 10


def test_retry_after_is_honoured(fake_polygon):
    fake = fake_polygon
    fake.fail(429, retry_after="1")
    bars = provider(fake).daily_bars(pairs(["AAPL"], DAYS[:3]))
    assert len(bars) == 3
    first, second = fake.requests
    assert first.status == 429 and second.status == 200
    assert second.t - first.t >= 1.0


def test_backoff_is_capped_in_the_client(fake_polygon):
    fake = fake_polygon
    fake.fail(500, times=4)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    p = provider(fake, backoff_base=100.0, backoff_cap=0.05, sleep=sleep)
    assert len(p.daily_bars(pairs(["AAPL"], DAYS[:2]))) == 2
    assert len(waits) == 4 and max(waits) <= 0.05


def test_gives_up_after_max_retries_naming_the_call(fake_polygon):
    fake = fake_polygon
    fake.fail(502, times=100)
    with pytest.raises(MarketDataError, match=r"AAPL.*3 attempts.*HTTP 502"):
        provider(fake, max_retries=2).daily_bars(pairs(["AAPL"], DAYS[:2]))
    assert len(fake.requests) == 3


def test_non_retryable_status_is_not_retried(fake_polygon):
    fake = fake_polygon
    fake.fail(403)
    with pytest.raises(MarketDataError, match="HTTP 403"):
        provider(fake).daily_bars(pairs(["AAPL"], DAYS[:2]))
    assert len(fake.requests) == 1


def test_wrong_key_is_a_clear_error(fake_polygon):
    p = PolygonMarketData("wrong", base_url=fake_polygon.url, requests_per_minute=FAST_RATE)
    with pytest.raises(MarketDataError, match=r"HTTP 401.*Unknown API Key"):
        p.daily_bars(pairs(["AAPL"], DAYS[:1]))


def test_stored_pairs_are_never_requested(fake_polygon):
    fake = fake_polygon
    fake.universe = STOCKS
    p = provider(fake)

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
    assert p.daily_bars(pairs([], [])).columns.tolist() == BAR_COLUMNS
    assert fake.requests == []


def test_unknown_ticker_is_absent_without_error(fake_polygon):
    fake = fake_polygon
    fake.unknown = {"ZZZZ", "O:ZZZZ251219C00010000".removeprefix("O:")}
    fake.universe = ["AAPL", "MSFT"]
    p = provider(fake)
    by_range = p.daily_bars(pairs(["AAPL", "ZZZZ", "ZZZZ251219C00010000"], DAYS[:30]))
    assert set(by_range["symbol"]) == {"AAPL"} and len(by_range) == 30
    tickers = ["AAPL", "MSFT", "ZZZZ"]
    by_grouped = p.daily_bars(pairs(tickers, DAYS[:2]))
    assert set(by_grouped["symbol"]) == {"AAPL", "MSFT"} and len(by_grouped) == 4


def test_pagination_retries_only_the_failing_page(fake_polygon):
    fake = fake_polygon
    fake.page_size = 40
    fake.fail(500, match="cursor=")  # the second page fails once
    wanted = pairs(["AAPL"], DAYS)
    pd.testing.assert_frame_equal(provider(fake).daily_bars(wanted), expected_bars(wanted))
    statuses = [r.status for r in fake.requests]
    assert statuses == [200, 500, 200, 200]  # pages 1, 2 (failed), 2, 3; page 1 not refetched


def test_short_interest_is_as_of_the_latest_settlement(fake_polygon):
    fake = fake_polygon
    fake.unknown = {"ZZZZ"}
    days = DAYS[-30:]
    si = provider(fake).short_interest(["AAPL", "MSFT", "ZZZZ", OPTIONS[0]], days)
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


def test_short_interest_without_float_leaves_pct_nan(fake_polygon, caplog):
    fake = fake_polygon
    fake.fail(403, match="/float")
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        si = provider(fake).short_interest(["AAPL"], DAYS[-5:])
    assert len(si) == 5
    assert si["short_interest_pct_float"].isna().all()
    assert si["days_to_cover"].notna().all()
    assert any("free float" in m for m in caplog.messages)


# -- sector/industry via yfinance, never leaving the machine -------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def route_through(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """Send all yfinance (libcurl) traffic to a proxy on loopback."""
    proxy = f"http://127.0.0.1:{port}"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


class LoopbackProxy:
    """Records the first request line of each connection; refuses (403) or never answers."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.lines: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.open.append(conn)
            conn.settimeout(5)
            try:
                self.lines.append(conn.recv(4096).decode(errors="replace").split("\r\n")[0])
                if self.answer:
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


@pytest.fixture
def refusing_proxy(monkeypatch) -> Iterator[LoopbackProxy]:
    proxy = LoopbackProxy(answer=True)
    route_through(monkeypatch, proxy.port)
    yield proxy
    proxy.close()


def test_security_info_failure_is_fast_logged_and_none(monkeypatch, caplog):
    route_through(monkeypatch, closed_port())
    p = PolygonMarketData("k")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
        info = p.security_info(["AAPL", "BRK.B", OPTIONS[0]])
    assert time.monotonic() - started < 5
    assert list(info.columns) == SECURITY_INFO_COLUMNS
    assert info["symbol"].tolist() == ["AAPL", "BRK.B", OPTIONS[0]]
    assert info[["sector", "industry"]].isna().all().all()
    assert sum("yfinance sector/industry" in m for m in caplog.messages) == 2  # not the option


def test_yfinance_traffic_only_reaches_the_loopback_proxy(refusing_proxy):
    info = PolygonMarketData("k").security_info(["MSFT"])
    assert info[["sector", "industry"]].isna().all().all()
    assert refusing_proxy.lines, "yfinance did not go through the loopback proxy"
    assert all(line.startswith("CONNECT ") for line in refusing_proxy.lines)
    assert all(".yahoo.com:443 " in line for line in refusing_proxy.lines)


def test_security_info_never_blocks_long(monkeypatch, caplog):
    proxy = LoopbackProxy(answer=False)  # accepts, never answers
    route_through(monkeypatch, proxy.port)
    try:
        p = PolygonMarketData("k", info_timeout=0.5)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="sigmasight_pipeline.resources.polygon"):
            info = p.security_info(["AAPL", "MSFT", "NVDA"])
        assert time.monotonic() - started < 2
        assert info[["sector", "industry"]].isna().all().all()
        assert any("skipping" in m for m in caplog.messages)
    finally:
        proxy.close()
