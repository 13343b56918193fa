"""Pacing outside calls: a rate limit shared by every process, and retries with backoff.

`SharedRateLimiter` promises at most `max_requests` requests in any `window_seconds` window,
counted across every process (and thread) that uses the same database and limiter name, two
runs in parallel included. It is a sliding-window log in PostgreSQL
(`sigmasight.rate_limit_log`, sql/0007): under a transaction-scoped advisory lock, a request is
granted when fewer than `max_requests` were granted in the last `window_seconds +
margin_seconds` by the server's `clock_timestamp()`, and its grant time is logged. One clock
(the server's) orders every process; the margin absorbs the jitter between a grant and the
request's arrival at the provider, so the provider never sees N + 1 requests within a window.

`RetryPolicy.run` retries one request: exponential backoff with jitter capped at
`backoff_cap`, except that a server's `Retry-After` is honoured in full (no cap), all within
`max_call_seconds` per request, after which the request fails with a message saying why.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TypeVar

import psycopg

from sigmasight_pipeline.resources.market_data import MarketDataError

__all__ = [
    "RateLimiter",
    "RetryPolicy",
    "Retryable",
    "SharedRateLimiter",
    "backoff_delay",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")
LOCK_CLASS = 0x5167  # first key of pg_advisory_xact_lock(int, int): "our rate limiters"
LOG_TABLE = "sigmasight.rate_limit_log"


class RateLimiter:
    """What providers need from a limiter: `acquire()` blocks until one request may be sent
    and returns the seconds waited."""

    def acquire(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class SharedRateLimiter(RateLimiter):
    """At most `max_requests` in any `window_seconds`, shared through PostgreSQL.

    `database_url` None means DATABASE_URL or the embedded server, resolved at the first
    request. `margin_seconds` (default: window / 60, i.e. 1 s a minute) widens the window
    used for granting. Thread-safe; each process (fork included) uses its own connection.
    """

    def __init__(
        self,
        database_url: str | None,
        name: str,
        max_requests: int,
        window_seconds: float = 60.0,
        margin_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if int(max_requests) != max_requests or max_requests < 1:
            raise ValueError(f"max_requests must be a positive integer, got {max_requests!r}")
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
        self.database_url = database_url
        self.name = name
        self.max_requests = int(max_requests)
        self.window_seconds = float(window_seconds)
        self.margin_seconds = (
            self.window_seconds / 60.0 if margin_seconds is None else float(margin_seconds)
        )
        self._key = zlib.crc32(name.encode()) - 2**31  # an int4 for the advisory lock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._pid = 0

    @classmethod
    def per_minute(
        cls,
        database_url: str | None,
        name: str,
        requests_per_minute: float,
        window_seconds: float = 60.0,
        **kw,
    ) -> SharedRateLimiter:
        """`requests_per_minute` as N requests per window (N = rate x window / 60, at least 1;
        a rate below one per window widens the window to 60 / rate seconds)."""
        if not requests_per_minute > 0:
            raise ValueError(f"requests per minute must be positive, got {requests_per_minute!r}")
        per_window = requests_per_minute * window_seconds / 60.0
        if per_window < 1:
            return cls(database_url, name, 1, 60.0 / requests_per_minute, **kw)
        return cls(database_url, name, math.floor(per_window + 1e-9), window_seconds, **kw)

    @property
    def requests_per_minute(self) -> float:
        return self.max_requests * 60.0 / self.window_seconds

    def acquire(self) -> float:
        """Block until a request may be sent (logging its grant); returns the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                wait = self._try_grant()
                if wait <= 0:
                    return waited
                self._sleep(wait)
                waited += wait

    def _try_grant(self) -> float:
        """Grant and log one request now (returns 0), or return the seconds until one frees."""
        span = self.window_seconds + self.margin_seconds
        for attempt in range(2):
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, self._key))
                    recent = conn.execute(
                        f"SELECT extract(epoch FROM clock_timestamp() - sent_at) FROM {LOG_TABLE} "
                        "WHERE limiter = %s AND sent_at > clock_timestamp() - make_interval("
                        "secs => %s) ORDER BY sent_at DESC LIMIT %s",
                        (self.name, span, self.max_requests),
                    ).fetchall()
                    if len(recent) >= self.max_requests:
                        oldest_age = float(recent[-1][0])
                        return max(span - oldest_age, 0.001)
                    conn.execute(
                        f"INSERT INTO {LOG_TABLE} VALUES (%s, clock_timestamp())", (self.name,)
                    )
                    conn.execute(
                        f"DELETE FROM {LOG_TABLE} WHERE limiter = %s AND sent_at < "
                        "clock_timestamp() - make_interval(secs => %s)",
                        (self.name, span + 60.0),
                    )
                    return 0.0
            except psycopg.errors.UndefinedTable as exc:
                raise MarketDataError(
                    f"the shared rate limiter needs the table {LOG_TABLE}: run the migrations "
                    "in sql/ (`sigmasight migrate`) on this database"
                ) from exc
            except psycopg.OperationalError:
                self._close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            from sigmasight_pipeline.resources.database import database_url

            self._conn = psycopg.connect(self.database_url or database_url(), autocommit=True)
            self._pid = os.getpid()
        return self._conn

    def _close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def granted_since(self, seconds: float) -> int:
        """Requests granted in the last `seconds` (for reports and tests)."""
        conn = self._connection()
        row = conn.execute(
            f"SELECT count(*) FROM {LOG_TABLE} WHERE limiter = %s AND "
            "sent_at > clock_timestamp() - make_interval(secs => %s)",
            (self.name, seconds),
        ).fetchone()
        return int(row[0]) if row else 0


# -- retries -------------------------------------------------------------------------------


def backoff_delay(
    attempt: int,
    *,
    base: float = 2.0,
    cap: float = 300.0,
    jitter: float = 1.0,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number `attempt` (0-based): `base * 2**attempt` plus up to `jitter`
    seconds of random jitter, never more than `cap`; but at least `retry_after` when the
    server sent one (a server's Retry-After is honoured in full, beyond the cap)."""
    delay = min(base * 2.0 ** min(attempt, 64) + jitter * rng(), cap)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A `Retry-After` header as seconds (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class Retryable(Exception):
    """Raised by one attempt: worth retrying (`problem` says what; `retry_after` seconds if
    the server said so)."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


@dataclass
class RetryPolicy:
    """How one request is retried: up to `max_retries` retries after `backoff_delay`, and
    never beyond `max_call_seconds` from the first attempt (a Retry-After that would end
    past it fails the request at once, saying so)."""

    max_retries: int = 8
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    jitter: float = 1.0
    max_call_seconds: float = 7200.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = random.random

    def run(
        self,
        attempt: Callable[[], T],
        *,
        what: str,
        limiter: RateLimiter | None = None,
        log: logging.Logger = logger,
        max_retries: int | None = None,
    ) -> T:
        """`attempt()` until it returns; `Retryable` is retried, anything else propagates.
        Every attempt first takes a slot from `limiter`. Raises MarketDataError naming `what`
        when retries (`max_retries`, default the policy's) or time run out."""
        retries = self.max_retries if max_retries is None else max_retries
        started: float | None = None
        tries = 0
        while True:
            if limiter is not None:
                limiter.acquire()
            if started is None:
                started = self.clock()
            try:
                return attempt()
            except Retryable as exc:
                problem, retry_after = exc.problem, exc.retry_after
            tries += 1
            elapsed = self.clock() - started
            if tries > retries:
                raise MarketDataError(
                    f"{what}: giving up after {tries} attempts in {elapsed:.0f}s; "
                    f"last error: {problem}"
                )
            delay = backoff_delay(
                tries - 1,
                base=self.backoff_base,
                cap=self.backoff_cap,
                jitter=self.jitter,
                retry_after=retry_after,
                rng=self.rng,
            )
            if elapsed + delay > self.max_call_seconds:
                asked = "" if retry_after is None else f" (the server asked for {retry_after:g}s)"
                raise MarketDataError(
                    f"{what}: giving up: {problem}; the next retry in {delay:.0f}s{asked} would "
                    f"pass the {self.max_call_seconds:g}s limit per call"
                )
            log.warning(
                "%s: %s; retry %d/%d in %.2fs%s",
                what,
                problem,
                tries,
                retries,
                delay,
                "" if retry_after is None else f" (Retry-After {retry_after:g}s)",
            )
            self.sleep(delay)
