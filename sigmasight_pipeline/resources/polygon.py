"""The Polygon (Massive) market data provider: planned, rate-limited, retried calls.

All HTTP goes through the official client (`massive`, the renamed `polygon-api-client`). The
client builds URLs, query parameters, auth headers, pagination (`next_url`) and models; this
module swaps the client's urllib3 pool for `GuardedPool`, which sends each HTTP request through
the shared rate limiter (`rate_limit.SharedRateLimiter`, one budget for every process using the
same key) and retries 429, 5xx, timeouts, connection errors, malformed JSON and a 200 whose
body says `"status": "ERROR"` (`rate_limit.RetryPolicy`: capped exponential backoff with
jitter, a server's Retry-After honoured in full, a bound on the time per request). The
client's own urllib3 retries are off, so these are the only retries; a paginated call retries
the failing page only.

Calls are planned (`plan_calls`): one grouped-daily call covers every stock and ETF on one day,
one per-ticker range call covers a ticker's whole span; the planner takes a minimum mix of both
(a minimum vertex cover of the bipartite ticker-day graph). Options are always range calls on
`O:` + OCC. A failed call marks its pairs "failed" and the fetch goes on; a bad key (401) or a
plan that excludes stock bars (403) stops it with a one-line `fatal`; options outside the plan
(403) are "failed" and the stock calls still run. Reference data (short interest, free float,
sector/industry, splits) lives in `polygon_reference`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
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
    FAILED,
    BarsResult,
    MarketDataError,
    concat_issues,
    empty_frame,
    issues_for,
    normalize_wanted,
    screen_bars,
)
from sigmasight_pipeline.resources.polygon_reference import PolygonReferenceData
from sigmasight_pipeline.resources.provider_cache import ProviderCache, utc_now
from sigmasight_pipeline.resources.rate_limit import (
    RateLimiter,
    Retryable,
    RetryPolicy,
    SharedRateLimiter,
    backoff_delay,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_REQUESTS_PER_MINUTE",
    "Call",
    "GuardedPool",
    "PolygonHTTPError",
    "PolygonMarketData",
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
DEFAULT_MAX_CALL_SECONDS = 7200.0  # long enough to honour a one-hour Retry-After
RETRY_STATUSES = frozenset({408, 429, 499, 500, 502, 503, 504})
OTHER_PROVIDERS = "SIGMASIGHT_MARKET_DATA=files or yfinance"


# -- the guarded HTTP pool -----------------------------------------------------------------

_current = threading.local()


@contextmanager
def naming(what: str, max_retries: int | None = None) -> Iterator[None]:
    """Name the Polygon call the requests in this block belong to (for retry log lines and
    errors), optionally with fewer retries than the policy's."""
    previous = getattr(_current, "what", None), getattr(_current, "max_retries", None)
    _current.what, _current.max_retries = what, max_retries
    try:
        yield
    finally:
        _current.what, _current.max_retries = previous


class PolygonHTTPError(MarketDataError):
    """Polygon answered with a status that is not worth retrying (401, 403, 404, ...)."""

    def __init__(self, status: int, where: str, body: str) -> None:
        self.status = status
        self.polygon_status, self.reason = _reason(body)
        super().__init__(f"{where}: {self.short}")

    @property
    def short(self) -> str:
        """`HTTP 403 NOT_AUTHORIZED: You are not entitled to this data...`"""
        label = f"HTTP {self.status}"
        if self.polygon_status and self.polygon_status not in ("ERROR", "OK"):
            label += f" {self.polygon_status}"
        return f"{label}: {self.reason}" if self.reason else label


def _reason(body: str) -> tuple[str | None, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, " ".join(body.split())[:200]
    if not isinstance(data, dict):
        return None, " ".join(body.split())[:200]
    message = data.get("message") or data.get("error") or ""
    return data.get("status"), " ".join(str(message).split())[:200]


class GuardedPool:
    """Stands in for the massive client's urllib3 `PoolManager`.

    Every HTTP request (first tries and retries alike) takes a slot from `limiter` first
    (inside `policy.run`). Retryable failures (RETRY_STATUSES, urllib3 timeouts and connection
    errors, a 200 whose body is not JSON or says `"status": "ERROR"`) are retried by `policy`;
    then, or on any other non-200 status, a MarketDataError is raised (which the client lets
    through). Log lines name the call (see `naming`).
    """

    def __init__(
        self, pool: urllib3.PoolManager, limiter: RateLimiter, policy: RetryPolicy
    ) -> None:
        self.pool = pool
        self.limiter = limiter
        self.policy = policy

    def request(
        self,
        method: str,
        url: str,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request through the limiter, retrying retryable failures."""
        path = urllib3.util.parse_url(url).path or url
        what = f"Polygon {getattr(_current, 'what', None) or path}"
        kw["retries"] = False  # ours are the only retries

        def attempt() -> urllib3.BaseHTTPResponse:
            try:
                resp = self.pool.request(method, url, fields=fields, headers=headers, **kw)
            except urllib3.exceptions.HTTPError as exc:  # timeouts, refused/reset connections
                raise Retryable(f"{type(exc).__name__}: {exc}") from exc
            if resp.status == 200:
                body = _json(resp.data)
                if body is None:
                    raise Retryable("malformed JSON in a 200 response")
                if isinstance(body, dict) and body.get("status") == "ERROR":
                    message = body.get("error") or body.get("message") or "no message"
                    raise Retryable(f'a 200 with "status": "ERROR": {message}')
                return resp
            if resp.status in RETRY_STATUSES:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise Retryable(f"HTTP {resp.status}", retry_after)
            raise PolygonHTTPError(resp.status, what, _text(resp.data))

        return self.policy.run(
            attempt,
            what=what,
            limiter=self.limiter,
            log=logger,
            max_retries=getattr(_current, "max_retries", None),
        )

    def __getattr__(self, name: str) -> Any:  # anything else: the real pool's
        if name == "pool":
            raise AttributeError(name)
        return getattr(self.pool, name)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None


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

    @property
    def is_option(self) -> bool:
        return self.kind == "range" and is_option_symbol(self.symbols[0])

    def covers(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """The wanted pairs this call answers for."""
        if self.kind == "grouped":
            mask = pairs["trade_date"].eq(self.start) & pairs["symbol"].isin(self.symbols)
        else:
            mask = pairs["symbol"].eq(self.symbols[0])
        return pairs[mask]


def polygon_ticker(symbol: str) -> str:
    """Polygon's ticker: `O:` + OCC for options, `BRK.B` style class shares for stocks."""
    if is_option_symbol(symbol):
        return parse_occ(symbol).polygon_ticker
    return symbol.strip().upper().replace("-", ".")


def plan_calls(wanted: pd.DataFrame) -> list[Call]:
    """The fewest Polygon calls that cover every wanted (symbol, trade_date) pair.

    Stocks and ETFs: each pair must be covered by a grouped-daily call on its day or a range
    call on its ticker, so the cheapest plan is a minimum vertex cover of the bipartite graph
    tickers x days with the wanted pairs as edges (König: its size is a maximum matching's).
    Ties favour range calls (small responses). Options: one range call per contract. Range
    calls span the ticker's first to last wanted day. Grouped calls first, by day; then ranges.
    """
    pairs = normalize_wanted(wanted)
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
        return empty_frame(BAR_COLUMNS)
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
        return np.array([getattr(a, name) for a in aggs], dtype=float)  # None -> NaN

    return {c: column(c) for c in ("open", "high", "low", "close", "volume")}


# -- the provider --------------------------------------------------------------------------


class PolygonMarketData(PolygonReferenceData):
    """MarketDataProvider backed by Polygon's REST API through the official `massive` client.

    `database_url` (None: DATABASE_URL or the embedded server, at first use) holds the shared
    rate limiter's log and the reference-data caches. The rate is `requests_per_minute`
    (Polygon's free tier: 5) per `rate_window_seconds`, shared by every process using the same
    key, with `rate_margin_seconds` (default window / 60) of slack for arrival jitter.
    `sleep`, `clock`, `jitter` and `backoff_base` are there so tests run fast; the defaults
    are 2 s base, 300 s cap on our backoff, 0-1 s jitter, 8 retries and `max_call_seconds`
    (2 h) per request.
    """

    name = "polygon"

    def __init__(
        self,
        api_key: str,
        *,
        database_url: str | None = None,
        base_url: str | None = None,
        requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
        rate_window_seconds: float = 60.0,
        rate_margin_seconds: float | None = None,
        limiter: RateLimiter | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        jitter: float = 1.0,
        max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        fetch_float: bool = True,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("PolygonMarketData needs a non-empty api_key (POLYGON_API_KEY)")
        key_id = hashlib.sha256(api_key.strip().encode()).hexdigest()[:12]
        self.limiter = limiter or SharedRateLimiter.per_minute(
            database_url,
            f"polygon:{key_id}",
            requests_per_minute,
            rate_window_seconds,
            margin_seconds=rate_margin_seconds,
        )
        self.policy = RetryPolicy(
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            jitter=jitter,
            max_call_seconds=max_call_seconds,
            sleep=sleep,
            clock=clock,
        )
        self.cache = ProviderCache(database_url, self.name)
        self.now = now
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
        # The client sends every request through `self.client.request(...)` (BaseClient._get).
        self.client.client = GuardedPool(self.client.client, self.limiter, self.policy)
        self.client.vx.client = GuardedPool(self.client.vx.client, self.limiter, self.policy)
        self._info_memo: dict[str, tuple[str | None, str | None]] = {}

    @classmethod
    def from_env(cls, **overrides: Any) -> PolygonMarketData:
        """Configured from POLYGON_API_KEY (required), POLYGON_REQUESTS_PER_MINUTE (default 5),
        POLYGON_MAX_CALL_SECONDS (default 7200) and POLYGON_BASE_URL (default: the client's)."""
        key = os.environ.get("POLYGON_API_KEY", "").strip()
        if not key:
            raise ValueError(
                "POLYGON_API_KEY is not set: the 'polygon' market data provider needs a "
                "Polygon/Massive API key (the free tier allows 5 requests/minute). Set it, or "
                "use SIGMASIGHT_MARKET_DATA=synthetic to run offline."
            )
        settings: dict[str, Any] = {"base_url": os.environ.get("POLYGON_BASE_URL") or None}
        for variable, name in (
            ("POLYGON_REQUESTS_PER_MINUTE", "requests_per_minute"),
            ("POLYGON_MAX_CALL_SECONDS", "max_call_seconds"),
        ):
            raw = os.environ.get(variable, "").strip()
            if raw:
                try:
                    settings[name] = float(raw)
                except ValueError as exc:
                    raise ValueError(f"{variable}={raw!r} is not a number") from exc
        settings.update(overrides)
        return cls(key, **settings)

    # -- bars ------------------------------------------------------------------------------

    def plan(self, wanted: pd.DataFrame) -> list[Call]:
        """The calls `fetch_bars(wanted)` would make (see `plan_calls`)."""
        return plan_calls(wanted)

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        return self.fetch_bars(wanted).bars

    def fetch_bars(self, wanted: pd.DataFrame) -> BarsResult:
        """Adjusted daily bars for the wanted pairs; failures and bad bars as issues."""
        pairs = normalize_wanted(wanted)
        frames: list[pd.DataFrame] = []
        failed: list[pd.DataFrame] = []
        fatal: str | None = None
        options_refused: str | None = None
        for call in plan_calls(pairs):
            skip = fatal or (options_refused if call.is_option else None)
            if skip:
                failed.append(issues_for(call.covers(pairs), FAILED, skip))
                continue
            try:
                frames.append(self._fetch(call))
            except PolygonHTTPError as exc:
                if exc.status == 401:
                    fatal = (
                        f"Polygon rejected POLYGON_API_KEY ({exc.short}): check the key "
                        "(POLYGON_API_KEY) at polygon.io/dashboard"
                    )
                    detail = fatal
                elif exc.status == 403 and call.is_option:
                    options_refused = (
                        f"options bars are not in POLYGON_API_KEY's plan ({exc.short}); "
                        "upgrade the Polygon plan to fetch them"
                    )
                    detail = options_refused
                elif exc.status == 403:
                    fatal = (
                        f"Polygon refused {call.describe()} for POLYGON_API_KEY's plan "
                        f"({exc.short}): upgrade the plan or use {OTHER_PROVIDERS}"
                    )
                    detail = fatal
                else:
                    detail = str(exc)
                failed.append(issues_for(call.covers(pairs), FAILED, detail))
            except MarketDataError as exc:
                failed.append(issues_for(call.covers(pairs), FAILED, str(exc)))
        if fatal:
            logger.error("%s", fatal)
        frames = [f for f in frames if not f.empty]
        raw = pd.concat(frames, ignore_index=True) if frames else empty_frame(BAR_COLUMNS)
        bars, rejected = screen_bars(pairs, raw)
        return BarsResult(bars, concat_issues([*failed, rejected]), fatal)

    def _fetch(self, call: Call) -> pd.DataFrame:
        """Raw bars (BAR_COLUMNS + origin) of one planned call."""
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
                return empty_frame(BAR_COLUMNS)
            # The requested day is the session; Polygon stamps grouped bars at the close.
            frame = pd.DataFrame(
                {
                    "symbol": [s for s, _ in rows],
                    "trade_date": call.start,
                    **_ohlcv([a for _, a in rows]),
                    "source": SOURCE,
                },
                columns=BAR_COLUMNS,
            )
        else:
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
            frame = bars_from_aggs(call.symbols[0], aggs)
        return frame.assign(origin=f"Polygon {call.describe()}")

    @staticmethod
    def _run(what: str, fetch: Callable[[], Any], max_retries: int | None = None) -> Any:
        """Run one client call named `what` (retry log lines and errors name it). Raises
        MarketDataError (PolygonHTTPError, with its status, for a non-retryable answer)."""
        with naming(what, max_retries):
            try:
                return fetch()
            except BadResponse as exc:  # a non-200 the guard let through (none expected)
                raise MarketDataError(f"Polygon {what}: {exc}") from exc
