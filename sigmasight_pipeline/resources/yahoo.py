"""The `yfinance` market data provider: free daily bars from Yahoo Finance, no key.

Bars come through the `yfinance` package (`Ticker.history`, `auto_adjust=True`: OHLC adjusted
for splits and dividends). Every HTTP request yfinance makes (cookie, crumb, timezone, chart,
quote summary) goes through `LimitedSession`, a curl_cffi session that first takes a slot from
the shared rate limiter (`rate_limit.SharedRateLimiter`, YAHOO_REQUESTS_PER_MINUTE, default
60/min, one budget for every process) and retries 429, 5xx and network errors
(`rate_limit.RetryPolicy`). Yahoo's chart API serves one ticker per request, so a fetch is one
request per ticker covering all its wanted days (after a timezone lookup yfinance caches on
disk). A ticker Yahoo says it has no data for is absent; a failure (after retries) is a
"failed" issue with yfinance's message, and after STOP_AFTER_FAILURES failed tickers in a row
the fetch stops (`fatal`) rather than wait out every retry of every ticker. Options are not
in Yahoo's history: absent (the pipeline model-prices them). Splits come from the same chart
responses (`events.splits`). Short interest: none (Yahoo only has the current figure).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
from curl_cffi import requests as curl_requests

from sigmasight_pipeline.analytics.instruments import is_option_symbol
from sigmasight_pipeline.resources.market_data import (
    BAR_COLUMNS,
    FAILED,
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    SPLIT_COLUMNS,
    BarsResult,
    MarketDataError,
    concat_issues,
    empty_frame,
    issues_for,
    normalize_wanted,
    screen_bars,
)
from sigmasight_pipeline.resources.provider_cache import ProviderCache, utc_now
from sigmasight_pipeline.resources.rate_limit import (
    RateLimiter,
    Retryable,
    RetryPolicy,
    SharedRateLimiter,
    parse_retry_after,
)

__all__ = ["DEFAULT_REQUESTS_PER_MINUTE", "LimitedSession", "YahooMarketData", "yahoo_ticker"]

logger = logging.getLogger(__name__)

SOURCE = "yfinance"
DEFAULT_REQUESTS_PER_MINUTE = 60.0
_YF_LOCK = threading.Lock()  # yfinance keeps one session and its config per process
_CACHE_SET = False
QUOTE_SUMMARY = "https://query2.finance.yahoo.com/v10/finance/quoteSummary"
STOP_AFTER_FAILURES = 3  # consecutive failed tickers: Yahoo is down or blocking us


def yahoo_ticker(symbol: str) -> str:
    """Yahoo's spelling: class shares with a dash (`BRK-B`)."""
    return symbol.strip().upper().replace(".", "-")


class LimitedSession(curl_requests.Session):
    """The session yfinance uses: every request takes a slot from `limiter` and is retried by
    `policy` on 429, 5xx and network errors. `redirect` (tests only) sends every request for a
    `*.yahoo.com` URL to that base URL instead, naming the meant host in `X-Yahoo-Host`."""

    def __init__(
        self,
        limiter: RateLimiter,
        policy: RetryPolicy,
        redirect: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(impersonate="chrome", timeout=timeout)
        self.limiter = limiter
        self.policy = policy
        self.redirect = redirect.rstrip("/") if redirect else None

    def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        parts = urlsplit(url)
        what = f"Yahoo {parts.hostname or ''}{parts.path}"
        if self.redirect and (parts.hostname or "").endswith("yahoo.com"):
            base = urlsplit(self.redirect)
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Yahoo-Host": parts.hostname}
            url = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

        def attempt() -> Any:
            try:
                response = super(LimitedSession, self).request(method, url, *args, **kwargs)
            except curl_requests.exceptions.RequestException as exc:
                raise Retryable(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise Retryable(f"HTTP {response.status_code}", retry_after)
            return response

        return self.policy.run(attempt, what=what, limiter=self.limiter, log=logger)


class YahooMarketData:
    """MarketDataProvider backed by Yahoo Finance through `yfinance` (see the module doc).

    `database_url` (None: DATABASE_URL or the embedded server, at first use) holds the shared
    limiter's log and the sector/industry cache. `cache_dir` is where yfinance keeps its
    timezone and cookie caches (default `.sigmasight/yfinance`; the first provider of the
    process sets it, as yfinance's caches cannot move once used). `base_url` points every
    request at a fake server (tests).
    """

    name = "yfinance"

    def __init__(
        self,
        *,
        database_url: str | None = None,
        requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
        rate_window_seconds: float = 60.0,
        rate_margin_seconds: float | None = None,
        limiter: RateLimiter | None = None,
        base_url: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        jitter: float = 1.0,
        max_call_seconds: float = 7200.0,
        sleep: Callable[[float], None] | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.limiter = limiter or SharedRateLimiter.per_minute(
            database_url,
            "yfinance",
            requests_per_minute,
            rate_window_seconds,
            margin_seconds=rate_margin_seconds,
        )
        policy = {"sleep": sleep} if sleep else {}
        self.policy = RetryPolicy(
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            jitter=jitter,
            max_call_seconds=max_call_seconds,
            **policy,
        )
        self.session = LimitedSession(self.limiter, self.policy, base_url, timeout)
        self.timeout = timeout
        self.cache = ProviderCache(database_url, self.name)
        self.now = now
        if cache_dir is None:
            from sigmasight_pipeline.resources.database import sigmasight_home

            cache_dir = sigmasight_home() / "yfinance"
        self.cache_dir = Path(cache_dir)
        self._splits: dict[str, list[tuple[date, date, pd.DataFrame]]] = {}
        self._info_memo: dict[str, tuple[str | None, str | None]] = {}

    @classmethod
    def from_env(cls, **overrides: Any) -> YahooMarketData:
        """Configured from YAHOO_REQUESTS_PER_MINUTE (default 60)."""
        settings: dict[str, Any] = {}
        raw = os.environ.get("YAHOO_REQUESTS_PER_MINUTE", "").strip()
        if raw:
            try:
                settings["requests_per_minute"] = float(raw)
            except ValueError as exc:
                raise ValueError(f"YAHOO_REQUESTS_PER_MINUTE={raw!r} is not a number") from exc
        settings.update(overrides)
        return cls(**settings)

    # -- yfinance plumbing -----------------------------------------------------------------

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        """Run `fn(yfinance)` with our session and caches, exceptions raised (not logged)."""
        import yfinance as yf
        from yfinance.config import YfConfig

        global _CACHE_SET
        with _YF_LOCK:
            if not _CACHE_SET:  # yfinance's caches can move only before their first use
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                yf.set_tz_cache_location(str(self.cache_dir))
                _CACHE_SET = True
            hidden = YfConfig.debug.hide_exceptions
            YfConfig.debug.hide_exceptions = False
            try:
                return fn(yf)
            finally:
                YfConfig.debug.hide_exceptions = hidden

    def _history(self, symbol: str, start: date, end: date) -> pd.DataFrame | None:
        """Adjusted daily history of one symbol from `start` to `end` (both included), with
        `Stock Splits`; None when Yahoo has no data for it. Raises on failure."""
        from yfinance.exceptions import YFPricesMissingError, YFTzMissingError

        def history(yf: Any) -> pd.DataFrame:
            ticker = yf.Ticker(yahoo_ticker(symbol), session=self.session)
            return ticker.history(
                start=start.isoformat(),
                end=(end + timedelta(days=1)).isoformat(),
                interval="1d",
                auto_adjust=True,
                actions=True,
                timeout=self.timeout,
            )

        try:
            frame = self._call(history)
        except (YFPricesMissingError, YFTzMissingError):
            return None  # Yahoo says it has nothing (unknown or delisted symbol)
        except curl_requests.exceptions.HTTPError as exc:
            if _status(exc) == 404:
                return None  # the same, found out through the quote summary
            raise
        days = pd.DatetimeIndex(frame.index)
        if days.tz is not None:
            days = days.tz_localize(None)
        frame.index = days.normalize()
        splits = frame.get("Stock Splits", pd.Series(dtype=float))
        self._remember_splits(symbol, start, end, splits[splits > 0])
        return frame

    # -- bars ------------------------------------------------------------------------------

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        return self.fetch_bars(wanted).bars

    def fetch_bars(self, wanted: pd.DataFrame) -> BarsResult:
        """Adjusted daily bars of the wanted stocks and ETFs; one request per ticker."""
        pairs = normalize_wanted(wanted)
        frames: list[pd.DataFrame] = []
        failed: list[pd.DataFrame] = []
        fatal: str | None = None
        in_a_row = 0
        stocks = pairs[~pairs["symbol"].map(is_option_symbol).astype(bool)]
        for symbol, mine in stocks.groupby("symbol", sort=True):
            symbol = str(symbol)
            if fatal:
                failed.append(issues_for(mine, FAILED, fatal))
                continue
            start, end = min(mine["trade_date"]), max(mine["trade_date"])
            try:
                history = self._history(symbol, start, end)
            except Exception as exc:  # anything yfinance or the network raises
                detail = f"Yahoo daily bars for {yahoo_ticker(symbol)}: {_message(exc)}"
                failed.append(issues_for(mine, FAILED, detail))
                in_a_row += 1
                if in_a_row >= STOP_AFTER_FAILURES:
                    fatal = (
                        f"Yahoo Finance failed {in_a_row} tickers in a row (last: {detail}); "
                        "stopped, the rest are asked again next run"
                    )
                    logger.error("%s", fatal)
                continue
            in_a_row = 0
            if history is None or history.empty:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "trade_date": history.index.date,
                        "open": history["Open"].to_numpy(dtype=float),
                        "high": history["High"].to_numpy(dtype=float),
                        "low": history["Low"].to_numpy(dtype=float),
                        "close": history["Close"].to_numpy(dtype=float),
                        "volume": history["Volume"].to_numpy(dtype=float),
                        "source": SOURCE,
                        "origin": f"Yahoo chart for {yahoo_ticker(symbol)}",
                    }
                )
            )
        raw = pd.concat(frames, ignore_index=True) if frames else empty_frame(BAR_COLUMNS)
        bars, rejected = screen_bars(pairs, raw)
        return BarsResult(bars, concat_issues([*failed, rejected]), fatal)

    # -- splits ----------------------------------------------------------------------------

    def _remember_splits(self, symbol: str, start: date, end: date, ratios: pd.Series) -> None:
        """Splits seen in a chart response covering [start, end] (ratio 4.0 = a 4:1 split)."""
        rows = []
        for day, ratio in ratios.items():
            fraction = Fraction(float(ratio)).limit_denominator(1000)
            day = pd.Timestamp(day).date()
            rows.append((symbol, day, float(fraction.denominator), float(fraction.numerator)))
        events = pd.DataFrame(rows, columns=SPLIT_COLUMNS)
        self._splits.setdefault(symbol, []).append((start, end, events))

    def _known_splits(self, symbol: str, start: date, end: date) -> pd.DataFrame | None:
        for first, last, events in self._splits.get(symbol, []):
            if first <= start and last >= end:
                day = events["execution_date"]
                return events[(day >= start) & (day <= end)]
        return None

    def splits(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Splits Yahoo reports in the chart responses (remembered from `fetch_bars`, else one
        request per symbol); a failure is logged and leaves the symbol out."""
        frames = []
        for symbol in dict.fromkeys(s for s in symbols if not is_option_symbol(s)):
            events = self._known_splits(symbol, start, end)
            if events is None:
                try:
                    self._history(symbol, start, end)
                except Exception as exc:  # anything yfinance or the network raises
                    logger.warning("Yahoo splits for %s: %s", yahoo_ticker(symbol), _message(exc))
                    continue
                events = self._known_splits(symbol, start, end)
            if events is not None and not events.empty:
                frames.append(events)
        if not frames:
            return empty_frame(SPLIT_COLUMNS)
        return pd.concat(frames, ignore_index=True).sort_values(
            ["symbol", "execution_date"], ignore_index=True
        )

    # -- reference data --------------------------------------------------------------------

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry from Yahoo's asset profile (one request per symbol, cached in
        this process and the database); options get None. A failure is logged once per call
        and stops further lookups; never raises."""
        wanted = [s for s in dict.fromkeys(symbols) if not is_option_symbol(s)]
        now = self.now()
        ask = [s for s in wanted if s not in self._info_memo]
        if ask:
            try:
                cached = self.cache.security_info(ask, now)
            except MarketDataError as exc:
                logger.warning("%s", exc)
                cached = empty_frame(SECURITY_INFO_COLUMNS)
            for row in cached.itertuples(index=False):
                self._info_memo[row.symbol] = (row.sector, row.industry)
        answered, failed, first_error = [], [], ""
        for symbol in wanted:
            if symbol in self._info_memo:
                continue
            if first_error:
                failed.append(symbol)
                continue
            try:
                profile = self._call(lambda yf, symbol=symbol: self._profile(symbol))
            except Exception as exc:  # anything yfinance or the network raises
                if _status(exc) != 404:  # 404: Yahoo does not know the symbol
                    failed.append(symbol)
                    first_error = _message(exc)
                    continue
                profile = {}
            found = (_clean(profile.get("sector")), _clean(profile.get("industry")))
            self._info_memo[symbol] = found
            answered.append((symbol, *found))
        if answered:
            try:
                self.cache.store_security_info(
                    pd.DataFrame(answered, columns=SECURITY_INFO_COLUMNS), now
                )
            except MarketDataError as exc:
                logger.warning("%s", exc)
        if failed:
            logger.warning(
                "No sector/industry from Yahoo for %d symbol(s) (%s%s): %s",
                len(failed),
                ", ".join(failed[:5]),
                ", ..." if len(failed) > 5 else "",
                first_error,
            )
        rows = [(s, *self._info_memo.get(s, (None, None))) for s in dict.fromkeys(symbols)]
        return pd.DataFrame(rows, columns=SECURITY_INFO_COLUMNS)

    def _profile(self, symbol: str) -> dict[str, Any]:
        """Yahoo's asset profile (sector, industry): one quote-summary request, through
        yfinance's data client (cookie and crumb handled there). Call inside `_call`."""
        from yfinance.data import YfData

        data = YfData(session=self.session).get_raw_json(
            f"{QUOTE_SUMMARY}/{yahoo_ticker(symbol)}",
            params={"modules": "assetProfile", "formatted": "false"},
            timeout=self.timeout,
        )
        results = ((data or {}).get("quoteSummary") or {}).get("result") or [{}]
        return results[0].get("assetProfile") or {}

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """Yahoo has only the current short interest, not as of past days: always empty."""
        return empty_frame(SHORT_INTEREST_COLUMNS)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _clean(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
