"""The shared rate limiter (PostgreSQL sliding-window log) and the retry policy."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import uuid

import pytest

from sigmasight_pipeline.calendar import last_sessions
from sigmasight_pipeline.resources.database import (
    connect,
    create_database,
    database_url,
    drop_database,
)
from sigmasight_pipeline.resources.market_data import MarketDataError
from sigmasight_pipeline.resources.rate_limit import Retryable, RetryPolicy, SharedRateLimiter

DAYS = [d.date() for d in last_sessions("2025-06-30", 30)]


def grant_times(url: str, name: str) -> list[float]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM sent_at) FROM sigmasight.rate_limit_log "
            "WHERE limiter = %s ORDER BY sent_at",
            (name,),
        ).fetchall()
    return [float(t) for (t,) in rows]


def max_in_window(times: list[float], seconds: float) -> int:
    """Most of `times` within any half-open window of `seconds`."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- the limiter ---------------------------------------------------------------------------


def test_rates_become_requests_per_window():
    five = SharedRateLimiter.per_minute(None, "x", 5)
    assert (five.max_requests, five.window_seconds, five.margin_seconds) == (5, 60.0, 1.0)
    fast = SharedRateLimiter.per_minute(None, "x", 600, window_seconds=1.0)
    assert (fast.max_requests, fast.window_seconds) == (10, 1.0)
    slow = SharedRateLimiter.per_minute(None, "x", 0.5)
    assert (slow.max_requests, slow.window_seconds) == (1, 120.0)
    assert slow.requests_per_minute == 0.5
    with pytest.raises(ValueError):
        SharedRateLimiter.per_minute(None, "x", 0)
    with pytest.raises(ValueError):
        SharedRateLimiter(None, "x", 2.5)


def test_threads_of_one_process_share_the_window(db_url):
    name = f"test-threads-{uuid.uuid4().hex[:8]}"
    limiter = SharedRateLimiter(db_url, name, max_requests=5, window_seconds=0.5)
    waits: list[float] = []

    def work() -> None:
        waits.extend(limiter.acquire() for _ in range(5))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = grant_times(db_url, name)
    assert len(times) == 20
    # By the database's clock: never more than 5 grants in any window + margin.
    assert max_in_window(times, 0.5 + limiter.margin_seconds) <= 5
    assert sum(waits) > 0
    assert limiter.granted_since(60) == 20


def test_a_database_without_the_table_is_a_clear_error():
    server = database_url()
    name = f"sigmasight_unmigrated_{uuid.uuid4().hex[:8]}"
    url = create_database(server, name)
    try:
        limiter = SharedRateLimiter(url, "x", 1)
        with pytest.raises(MarketDataError, match=r"rate_limit_log.*sigmasight migrate"):
            limiter.acquire()
    finally:
        drop_database(server, name)


CHILD = """
import json, sys
import pandas as pd
from sigmasight_pipeline.resources.polygon import PolygonMarketData
args = json.loads(sys.argv[1])
p = PolygonMarketData("test-key", database_url=args["db"], base_url=args["url"],
                      requests_per_minute=args["rate"], rate_window_seconds=args["window"],
                      rate_margin_seconds=args["margin"])
wanted = pd.DataFrame([(s, pd.Timestamp(d).date()) for s in args["symbols"] for d in args["days"]],
                      columns=["symbol", "trade_date"])
print("ready", flush=True)
sys.stdin.readline()
result = p.fetch_bars(wanted)
print(json.dumps({"bars": len(result.bars), "issues": len(result.issues)}), flush=True)
"""


def test_two_processes_share_one_budget_at_the_server(fake_polygon, db_url):
    """Two processes fetching at once through the same key: the server never sees more than
    N requests in any window. Each alone would send N per window, so together 2N."""
    with connect(db_url) as conn:
        conn.execute("DELETE FROM sigmasight.rate_limit_log")
        conn.commit()
    # A 1 s window keeps the test short; the margin covers this shared machine's scheduling
    # jitter between a grant and the request's arrival (1 s of a 60 s window in production).
    per_window, window, margin = 10, 1.0, 0.25
    groups = [[f"A{i:02d}" for i in range(24)], [f"B{i:02d}" for i in range(24)]]
    children = []
    for symbols in groups:
        args = {
            "db": db_url,
            "url": fake_polygon.url,
            "rate": per_window * 60.0 / window,
            "window": window,
            "margin": margin,
            "symbols": symbols,
            "days": [d.isoformat() for d in DAYS],
        }
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # both start together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert outputs == [{"bars": 24 * 30, "issues": 0}] * 2
    requests = fake_polygon.requests
    assert len(requests) == 48  # 24 range calls each (30 days x 24 tickers: ranges win)
    a = [r.t for r in requests if "/A" in r.path]
    b = [r.t for r in requests if "/B" in r.path]
    assert min(b) < max(a) and min(a) < max(b)  # they really ran at the same time
    assert fake_polygon.max_in_window(window) <= per_window


# -- the retry policy ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def flaky(*problems: Retryable | None):
    """An attempt that raises the given Retryables in turn, then returns "ok"."""
    queue = list(problems)

    def attempt() -> str:
        if queue:
            problem = queue.pop(0)
            if problem is not None:
                raise problem
        return "ok"

    return attempt


def policy(clock: Clock, **kw) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, clock=clock, rng=lambda: 0.0, **kw)


def test_retry_after_is_waited_in_full_and_backoff_is_capped():
    clock = Clock()
    run = policy(clock, backoff_cap=300.0).run
    assert run(flaky(Retryable("HTTP 429", 3600.0), Retryable("HTTP 500")), what="x") == "ok"
    assert clock.waits == [3600.0, 4.0]
    clock.waits.clear()
    assert run(flaky(*[Retryable("HTTP 500")] * 8), what="x") == "ok"
    assert clock.waits == [2, 4, 8, 16, 32, 64, 128, 256]
    clock.waits.clear()
    assert run(flaky(*[Retryable("HTTP 500")] * 8), what="x", max_retries=8) == "ok"
    assert max(clock.waits) == 256


def test_retries_run_out_with_a_message_naming_the_call(caplog):
    clock = Clock()
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(MarketDataError, match=r"short interest for AAPL: giving up after 3 "),
    ):
        policy(clock, max_retries=2).run(
            flaky(*[Retryable("HTTP 502")] * 5), what="short interest for AAPL"
        )
    assert len(caplog.messages) == 2
    assert all(m.startswith("short interest for AAPL: HTTP 502; retry") for m in caplog.messages)


def test_the_time_limit_per_call_is_kept():
    clock = Clock()
    run = policy(clock, max_call_seconds=1000.0).run
    with pytest.raises(MarketDataError, match=r"asked for 3600s.*1000s limit per call"):
        run(flaky(Retryable("HTTP 429", 3600.0)), what="x")
    assert clock.waits == []  # failed at once, not after waiting
    clock.waits.clear()
    with pytest.raises(MarketDataError, match="1000s limit"):
        run(flaky(*[Retryable("HTTP 500", 300.0)] * 10), what="x")
    assert sum(clock.waits) <= 1000


def test_other_errors_are_not_retried():
    clock = Clock()

    def broken() -> str:
        raise ValueError("not retryable")

    with pytest.raises(ValueError):
        policy(clock).run(broken, what="x")
    assert clock.waits == []


def test_every_attempt_takes_a_slot(db_url):
    name = f"test-slots-{uuid.uuid4().hex[:8]}"
    limiter = SharedRateLimiter(db_url, name, max_requests=100)
    clock = Clock()
    policy(clock).run(flaky(Retryable("a"), Retryable("b")), what="x", limiter=limiter)
    assert len(grant_times(db_url, name)) == 3
