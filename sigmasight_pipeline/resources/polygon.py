"""The Polygon (Massive) market data provider: planned, rate-limited, retried calls.

All HTTP goes through the official client (`massive`, the renamed `polygon-api-client`). The
client builds URLs, query parameters, auth headers, pagination (`next_url`) and models; this
module swaps the client's urllib3 pool for `GuardedPool`, a thin wrapper that sends each HTTP
request through a `TokenBucket` and retries it on 429, 5xx, timeouts, connection errors and
malformed JSON with capped exponential backoff plus jitter, honouring `Retry-After`. The
client's own urllib3 retries are switched off, so these are the only retries, and retries of
a paginated call retry the failing page only.

Calls are planned (`plan_calls`): one grouped-daily call covers every stock and ETF on one day,
one per-ticker range call covers a ticker's whole span; the planner takes a minimum mix of both
(a minimum vertex cover of the bipartite ticker-day graph). Options are always range calls on
`O:` + OCC. Only the wanted (symbol, day) pairs are returned.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import urllib3
from massive import RESTClient
from massive.exceptions import BadResponse
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from sigmasight_pipeline.analytics.instruments import is_option_symbol, parse_occ
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    MarketDataError,
)

__all__ = [
    "DEFAULT_REQUESTS_PER_MINUTE",
    "Call",
    "GuardedPool",
    "PolygonHTTPError",
    "PolygonMarketData",
    "TokenBucket",
    "backoff_delay",
    "bars_from_aggs",
    "parse_retry_after",
    "plan_calls",
    "polygon_ticker",
]

logger = logging.getLogger(__name__)

SOURCE = "polygon"
TIMEZONE = "America/New_York"
DEFAULT_REQUESTS_PER_MINUTE = 5.0  # Polygon's free tier
RETRY_STATUSES = frozenset({408, 429, 499, 500, 502, 503, 504})
# FINRA settles short interest twice a month; look back far enough to find the settlement
# in force on the first wanted day.
SETTLEMENT_LOOKBACK_DAYS = 45
FLOAT_BATCH = 100


# -- rate limiting and backoff -------------------------------------------------------------


class TokenBucket:
    """A thread-safe token bucket: `acquire()` blocks until a request may be sent.

    Refills `rate_per_minute / 60` tokens a second up to `capacity`. The default capacity of
    1 spaces requests evenly (60 / rate seconds apart), which guarantees at most
    `rate_per_minute` requests in any 60-second window; a larger capacity allows bursts of
    that size (and up to `capacity - 1` extra requests in a window). Waiters reserve their slot
    under the lock and sleep outside it, so they are served in arrival order.
    """

    def __init__(
        self,
        rate_per_minute: float,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_minute > 0:
            raise ValueError(f"rate_per_minute must be positive, got {rate_per_minute!r}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.rate_per_minute = float(rate_per_minute)
        self.capacity = float(capacity or 1)
        self._per_second = self.rate_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self._per_second)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self._per_second if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


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
    seconds of random jitter, at least `retry_after`, and never more than `cap`."""
    delay = base * 2.0 ** min(attempt, 64) + jitter * rng()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


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


class PolygonHTTPError(MarketDataError):
    """Polygon answered with a status that is not worth retrying (401, 403, 404, ...)."""

    def __init__(self, status: int, where: str, body: str) -> None:
        super().__init__(f"HTTP {status} for {where}: {body[:300]}")
        self.status = status


class GuardedPool:
    """Stands in for the massive client's urllib3 `PoolManager`.

    Every HTTP request (first tries and retries alike) takes a token from the bucket first.
    Retryable failures (RETRY_STATUSES, urllib3 timeouts and connection errors, a 200 whose
    body is not JSON) are retried up to `max_retries` times after `backoff_delay`; then, or on
    any other non-200 status, a MarketDataError is raised (which the client lets through).
    """

    def __init__(
        self,
        pool: urllib3.PoolManager,
        bucket: TokenBucket,
        *,
        max_retries: int = 8,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        jitter: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.pool = pool
        self.bucket = bucket
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.jitter = jitter
        self._sleep = sleep
        self._rng = rng

    def request(
        self,
        method: str,
        url: str,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request through the bucket, retrying retryable failures."""
        where = urllib3.util.parse_url(url).path or url
        kw["retries"] = False  # ours are the only retries
        attempt = 0
        while True:
            self.bucket.acquire()
            retry_after: float | None = None
            try:
                resp = self.pool.request(method, url, fields=fields, headers=headers, **kw)
            except urllib3.exceptions.HTTPError as exc:  # timeouts, refused/reset connections
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status == 200:
                    if _is_json(resp.data):
                        return resp
                    problem = "malformed JSON in a 200 response"
                elif resp.status in RETRY_STATUSES:
                    problem = f"HTTP {resp.status}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                else:
                    raise PolygonHTTPError(resp.status, where, _text(resp.data))
            if attempt >= self.max_retries:
                raise MarketDataError(
                    f"{where}: giving up after {attempt + 1} attempts; last error: {problem}"
                )
            delay = backoff_delay(
                attempt,
                base=self.backoff_base,
                cap=self.backoff_cap,
                jitter=self.jitter,
                retry_after=retry_after,
                rng=self._rng,
            )
            logger.warning(
                "Polygon %s: %s; retry %d/%d in %.2fs%s",
                where,
                problem,
                attempt + 1,
                self.max_retries,
                delay,
                "" if retry_after is None else f" (Retry-After {retry_after:g}s)",
            )
            self._sleep(delay)
            attempt += 1

    def __getattr__(self, name: str) -> Any:  # anything else: the real pool's
        if name == "pool":
            raise AttributeError(name)
        return getattr(self.pool, name)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


# -- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One planned Polygon request (before pagination and retries).

    `grouped`: the grouped-daily bars of every stock on `start` (== `end`); `symbols` are the
    stocks it is meant to cover that day. `range`: daily bars of one `ticker` (Polygon's
    spelling, `O:` + OCC for options) from `start` to `end`; `symbols` is that one symbol.
    """

    kind: Literal["grouped", "range"]
    ticker: str | None
    start: date
    end: date
    symbols: tuple[str, ...]

    def describe(self) -> str:
        if self.kind == "grouped":
            return f"grouped daily bars for {self.start} ({len(self.symbols)} symbols)"
        return f"daily bars for {self.ticker} from {self.start} to {self.end}"


def polygon_ticker(symbol: str) -> str:
    """Polygon's ticker: `O:` + OCC for options, `BRK.B` style class shares for stocks."""
    if is_option_symbol(symbol):
        return parse_occ(symbol).polygon_ticker
    return symbol.strip().upper().replace("-", ".")


def _normalize_wanted(wanted: pd.DataFrame) -> pd.DataFrame:
    missing = {"symbol", "trade_date"} - set(wanted.columns)
    if missing:
        raise ValueError(f"wanted needs columns symbol and trade_date; missing {sorted(missing)}")
    if wanted.empty:
        return pd.DataFrame({"symbol": pd.Series(dtype=object), "trade_date": []})
    out = pd.DataFrame(
        {
            "symbol": wanted["symbol"].astype(str).to_numpy(dtype=object),
            "trade_date": pd.to_datetime(wanted["trade_date"]).dt.date.to_numpy(dtype=object),
        }
    )
    return out.drop_duplicates(ignore_index=True)


def plan_calls(wanted: pd.DataFrame) -> list[Call]:
    """The fewest Polygon calls that cover every wanted (symbol, trade_date) pair.

    Stocks and ETFs: each pair must be covered by a grouped-daily call on its day or a range
    call on its ticker, so the cheapest plan is a minimum vertex cover of the bipartite graph
    tickers x days with the wanted pairs as edges (König: its size is a maximum matching's).
    Ties favour range calls (small responses). Options: one range call per contract. Range
    calls span the ticker's first to last wanted day. Grouped calls first, by day; then ranges.
    """
    pairs = _normalize_wanted(wanted)
    if pairs.empty:
        return []
    option = pairs["symbol"].map(is_option_symbol).to_numpy(dtype=bool)
    calls: list[Call] = []

    stocks = pairs[~option]
    if not stocks.empty:
        tickers, t_idx = np.unique(stocks["symbol"].to_numpy(dtype=object), return_inverse=True)
        days, d_idx = np.unique(stocks["trade_date"].to_numpy(dtype=object), return_inverse=True)
        range_ticker, grouped_day = _min_vertex_cover(t_idx, d_idx, len(tickers), len(days))
        not_ranged = ~range_ticker[t_idx]
        for j in np.flatnonzero(grouped_day):
            on_day = tickers[np.unique(t_idx[(d_idx == j) & not_ranged])]
            calls.append(Call("grouped", None, days[j], days[j], tuple(on_day)))
        for i in np.flatnonzero(range_ticker):
            mine = days[np.unique(d_idx[t_idx == i])]
            calls.append(
                Call("range", polygon_ticker(tickers[i]), mine[0], mine[-1], (tickers[i],))
            )

    for symbol, group in pairs[option].groupby("symbol", sort=True):
        calls.append(
            Call(
                "range",
                polygon_ticker(str(symbol)),
                min(group["trade_date"]),
                max(group["trade_date"]),
                (str(symbol),),
            )
        )
    return calls


def _min_vertex_cover(
    rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum vertex cover of a bipartite graph given as edge lists (boolean masks per side).

    König's construction: Z = vertices reachable from unmatched rows by alternating paths;
    the cover is (rows not in Z) + (columns in Z).
    """
    graph = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_rows, n_cols))
    graph.sum_duplicates()
    col_of_row = maximum_bipartite_matching(graph, perm_type="column")
    row_of_col = np.full(n_cols, -1, dtype=np.int64)
    matched = np.flatnonzero(col_of_row >= 0)
    row_of_col[col_of_row[matched]] = matched
    seen_row = col_of_row < 0
    seen_col = np.zeros(n_cols, dtype=bool)
    frontier = list(np.flatnonzero(seen_row))
    while frontier:
        r = frontier.pop()
        for c in graph.indices[graph.indptr[r] : graph.indptr[r + 1]]:
            if not seen_col[c]:
                seen_col[c] = True
                partner = row_of_col[c]
                if partner >= 0 and not seen_row[partner]:
                    seen_row[partner] = True
                    frontier.append(int(partner))
    return ~seen_row, seen_col


# -- response handling ---------------------------------------------------------------------


def bars_from_aggs(symbol: str, aggs: Sequence[Any]) -> pd.DataFrame:
    """BAR_COLUMNS from massive `Agg`s of one ticker; `timestamp` is epoch ms of the session's
    New York midnight, so the session is its America/New_York date (never the UTC date)."""
    if not aggs:
        return _empty(BAR_COLUMNS)
    ts = pd.to_datetime(pd.Series([a.timestamp for a in aggs], dtype="int64"), unit="ms", utc=True)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "trade_date": ts.dt.tz_convert(TIMEZONE).dt.date.to_numpy(dtype=object),
            **_ohlcv(aggs),
            "source": SOURCE,
        },
        columns=BAR_COLUMNS,
    )


def _ohlcv(aggs: Sequence[Any]) -> dict[str, np.ndarray]:
    def column(name: str) -> np.ndarray:
        return np.array([getattr(a, name) for a in aggs], dtype=float)

    return {c: column(c) for c in ("open", "high", "low", "close", "volume")}


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


# -- the provider --------------------------------------------------------------------------


class PolygonMarketData:
    """MarketDataProvider backed by Polygon's REST API through the official `massive` client.

    `base_url` None means the client's default host. `sleep`, `jitter` and `backoff_base` are
    there so tests can run fast; the defaults follow the PRD (2 s base, 300 s cap, 0-1 s
    jitter, 5 requests/minute). Sector/industry come from yfinance, each lookup bounded by
    `info_timeout` seconds.
    """

    name = "polygon"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
        bucket_capacity: int | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        jitter: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        info_timeout: float = 10.0,
        fetch_float: bool = True,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("PolygonMarketData needs a non-empty api_key (POLYGON_API_KEY)")
        self.bucket = TokenBucket(requests_per_minute, bucket_capacity)
        self.info_timeout = info_timeout
        self.fetch_float = fetch_float
        options: dict[str, Any] = {
            "api_key": api_key.strip(),
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": 0,
            "pagination": True,
            # Overrides the client's urllib3 Retry(status_forcelist=[429, 5xx...]) on the pool.
            "connection_pool_kw": {"retries": False},
        }
        if base_url:
            options["base"] = base_url.rstrip("/")
        self.client = RESTClient(**options)
        guard = {
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_cap": backoff_cap,
            "jitter": jitter,
            "sleep": sleep,
        }
        # The client sends every request through `self.client.request(...)` (BaseClient._get).
        self.client.client = GuardedPool(self.client.client, self.bucket, **guard)
        self.client.vx.client = GuardedPool(self.client.vx.client, self.bucket, **guard)
        self._info_cache: dict[str, tuple[str | None, str | None]] = {}

    @classmethod
    def from_env(cls, **overrides: Any) -> PolygonMarketData:
        """Configured from POLYGON_API_KEY (required), POLYGON_REQUESTS_PER_MINUTE (default 5)
        and POLYGON_BASE_URL (default: the client's host)."""
        key = os.environ.get("POLYGON_API_KEY", "").strip()
        if not key:
            raise ValueError(
                "POLYGON_API_KEY is not set: the 'polygon' market data provider needs a "
                "Polygon/Massive API key (the free tier allows 5 requests/minute). Set it, or "
                "use SIGMASIGHT_MARKET_DATA=synthetic to run offline."
            )
        raw_rate = os.environ.get("POLYGON_REQUESTS_PER_MINUTE", "").strip()
        settings: dict[str, Any] = {"base_url": os.environ.get("POLYGON_BASE_URL") or None}
        if raw_rate:
            try:
                settings["requests_per_minute"] = float(raw_rate)
            except ValueError as exc:
                raise ValueError(
                    f"POLYGON_REQUESTS_PER_MINUTE={raw_rate!r} is not a number"
                ) from exc
        settings.update(overrides)
        return cls(key, **settings)

    # -- bars ------------------------------------------------------------------------------

    def plan(self, wanted: pd.DataFrame) -> list[Call]:
        """The calls `daily_bars(wanted)` would make (see `plan_calls`)."""
        return plan_calls(wanted)

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        """Adjusted daily bars for exactly the wanted pairs Polygon has (BAR_COLUMNS)."""
        pairs = _normalize_wanted(wanted)
        frames = [self._fetch(call) for call in plan_calls(pairs)]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return _empty(BAR_COLUMNS)
        bars = pd.concat(frames, ignore_index=True).dropna(subset=["close"])
        bars = bars.merge(pairs, on=["symbol", "trade_date"], how="inner")
        bars = bars.drop_duplicates(["symbol", "trade_date"], ignore_index=True)
        return bars.sort_values(["symbol", "trade_date"], ignore_index=True)[BAR_COLUMNS]

    def _fetch(self, call: Call) -> pd.DataFrame:
        if call.kind == "grouped":
            aggs = self._run(
                call.describe(),
                lambda: self.client.get_grouped_daily_aggs(call.start.isoformat(), adjusted=True),
            )
            by_ticker: dict[str, list[str]] = {}
            for symbol in call.symbols:
                by_ticker.setdefault(polygon_ticker(symbol), []).append(symbol)
            rows = [(s, a) for a in aggs for s in by_ticker.get(a.ticker or "", ())]
            if not rows:
                return _empty(BAR_COLUMNS)
            # The requested day is the session; Polygon stamps grouped bars at the close.
            return pd.DataFrame(
                {
                    "symbol": [s for s, _ in rows],
                    "trade_date": call.start,
                    **_ohlcv([a for _, a in rows]),
                    "source": SOURCE,
                },
                columns=BAR_COLUMNS,
            )
        aggs = self._run(
            call.describe(),
            lambda: list(
                self.client.list_aggs(
                    call.ticker or "",
                    1,
                    "day",
                    call.start.isoformat(),
                    call.end.isoformat(),
                    adjusted=True,
                    sort="asc",
                    limit=50000,
                )
            ),
        )
        return bars_from_aggs(call.symbols[0], aggs)

    @staticmethod
    def _run(what: str, fetch: Callable[[], Any]) -> Any:
        """Run one client call; any failure becomes a MarketDataError naming the call."""
        try:
            return fetch()
        except (MarketDataError, BadResponse) as exc:  # BadResponse: a non-200 past the guard
            raise MarketDataError(f"Polygon {what}: {exc}") from exc

    # -- short interest --------------------------------------------------------------------

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """Short interest as of each day: the latest settlement on or before it.

        One short-interest call per stock (options are skipped). `days_to_cover` is Polygon's;
        `short_interest_pct_float` is 100 * short interest / free float, with the free float
        from Polygon's float endpoint (the current figure, not as of the day); NaN when that
        endpoint is unavailable (e.g. not in the plan). Days before the first settlement found
        and stocks without data are absent.
        """
        stocks = [s for s in dict.fromkeys(symbols) if not is_option_symbol(s)]
        day_list = sorted({pd.Timestamp(d).date() for d in days})
        if not stocks or not day_list:
            return _empty(SHORT_INTEREST_COLUMNS)
        first = (day_list[0] - timedelta(days=SETTLEMENT_LOOKBACK_DAYS)).isoformat()
        last = day_list[-1].isoformat()
        records = []
        for symbol in stocks:
            ticker = polygon_ticker(symbol)
            results = self._run(
                f"short interest for {ticker} from {first} to {last}",
                lambda ticker=ticker: list(
                    self.client.list_short_interest(
                        ticker=ticker,
                        settlement_date_gte=first,
                        settlement_date_lte=last,
                        limit=1000,
                    )
                ),
            )
            records += [
                (symbol, r.settlement_date, r.short_interest, r.days_to_cover)
                for r in results
                if r.settlement_date
            ]
        if not records:
            return _empty(SHORT_INTEREST_COLUMNS)
        settled = pd.DataFrame(
            records, columns=["symbol", "settlement", "short_interest", "days_to_cover"]
        )
        settled["settlement"] = pd.to_datetime(settled["settlement"])
        settled = settled.sort_values("settlement", kind="stable")
        settled = settled.drop_duplicates(["symbol", "settlement"], keep="last")
        grid = pd.DataFrame(
            [(s, d) for s in settled["symbol"].unique() for d in day_list],
            columns=["symbol", "trade_date"],
        )
        grid["day"] = pd.to_datetime(grid["trade_date"])
        asof = pd.merge_asof(
            grid.sort_values("day"),
            settled,
            left_on="day",
            right_on="settlement",
            by="symbol",
            direction="backward",
        ).dropna(subset=["settlement"])
        free_float = self._free_float(list(asof["symbol"].unique())) if self.fetch_float else {}
        shares = asof["symbol"].map(free_float).astype(float)
        asof["short_interest_pct_float"] = 100.0 * asof["short_interest"].astype(float) / shares
        asof["days_to_cover"] = asof["days_to_cover"].astype(float)
        out = asof.sort_values(["symbol", "day"], ignore_index=True)
        return out[SHORT_INTEREST_COLUMNS]

    def _free_float(self, symbols: list[str]) -> dict[str, float]:
        """Free float shares by symbol; {} (and a warning) if the endpoint is unavailable."""
        by_ticker = {polygon_ticker(s): s for s in symbols}
        tickers = sorted(by_ticker)
        out: dict[str, float] = {}
        for i in range(0, len(tickers), FLOAT_BATCH):
            batch = tickers[i : i + FLOAT_BATCH]
            try:
                rows = self._run(
                    f"free float for {len(batch)} tickers",
                    lambda batch=batch: list(
                        self.client.list_stocks_floats(ticker_any_of=",".join(batch), limit=5000)
                    ),
                )
            except MarketDataError as exc:
                logger.warning("No free float, so no short interest %% of float: %s", exc)
                return out
            latest: dict[str, tuple[str, float]] = {}
            for r in rows:
                if r.ticker in by_ticker and r.free_float:
                    seen = latest.get(r.ticker)
                    if seen is None or (r.effective_date or "") >= seen[0]:
                        latest[r.ticker] = (r.effective_date or "", float(r.free_float))
            out.update({by_ticker[t]: shares for t, (_, shares) in latest.items()})
        return out

    # -- reference data --------------------------------------------------------------------

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry from yfinance; failures are logged and leave None, never raise.

        Options get None. Each lookup runs in a daemon thread bounded by `info_timeout`; after
        one lookup times out the rest are skipped, so a dead network costs one timeout at most.
        Successful lookups are cached for the provider's lifetime.
        """
        rows = []
        gave_up = False
        for symbol in dict.fromkeys(symbols):
            if is_option_symbol(symbol):
                rows.append((symbol, None, None))
                continue
            if symbol not in self._info_cache and not gave_up:
                found, timed_out = _yfinance_sector_industry(symbol, self.info_timeout)
                if found is not None:
                    self._info_cache[symbol] = found
                if timed_out:
                    gave_up = True
                    logger.warning("yfinance timed out; skipping sector/industry lookups")
            sector, industry = self._info_cache.get(symbol, (None, None))
            rows.append((symbol, sector, industry))
        return pd.DataFrame(rows, columns=SECURITY_INFO_COLUMNS)


def _yfinance_sector_industry(
    symbol: str, timeout: float
) -> tuple[tuple[str | None, str | None] | None, bool]:
    """((sector, industry) or None on failure, whether the lookup timed out)."""
    result: dict[str, Any] = {}

    def lookup() -> None:
        try:
            import yfinance as yf

            info = yf.Ticker(symbol.replace(".", "-")).info or {}
            result["value"] = (_clean(info.get("sector")), _clean(info.get("industry")))
        except Exception as exc:  # anything yfinance or the network throws
            result["error"] = exc

    worker = threading.Thread(target=lookup, name=f"yfinance-{symbol}", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        logger.warning("yfinance sector/industry for %s: no answer within %.1fs", symbol, timeout)
        return None, True
    if "error" in result:
        error = result["error"]
        logger.warning(
            "yfinance sector/industry for %s failed after %.1fs: %s: %s",
            symbol,
            time.monotonic() - started,
            type(error).__name__,
            error,
        )
        return None, False
    return result["value"], False


def _clean(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
