"""A fake Polygon (Massive) REST server on 127.0.0.1 for tests: real HTTP, Polygon's JSON.

Serves what `PolygonMarketData` calls through the real `massive` client:

* `/v2/aggs/ticker/{ticker}/range/1/day/{from}/{to}` (per-ticker daily bars, `next_url` pages)
* `/v2/aggs/grouped/locale/us/market/stocks/{date}` (every `universe` stock on one day)
* `/stocks/v1/short-interest` (filters `ticker`, `settlement_date.gte/.lte`; paged)
* `/stocks/vX/float` (filter `ticker.any_of`)
* `/v3/reference/tickers/{ticker}` (ticker details: type, SIC code and description)
* `/v3/reference/splits` (filters `ticker`, `execution_date.gte/.lte`; paged)

Bars come from a deterministic source `bars(symbol, days) -> DataFrame[BAR_COLUMNS]` (plain OCC
for options: the server strips `O:`), stamped like Polygon: range bars at the session's New York
midnight, grouped bars at its 16:00 close. Bad data is planted per test: `bad_close` (zero,
negative, NaN, infinite or missing closes), `conflicting_bar` (a second, different bar for the
same day), `empty_days` (sessions with no bars at all), `delisted` (no bars after a day),
`options_forbidden` (every `O:` request answered 403 NOT_AUTHORIZED), `split_events`,
`details` and `today` (short interest served only once published). Faults are queued per test
(`fail`, `soft_error`, `slow`, `malformed`) and consumed by the next matching requests;
`fail(429, retry_after="3600")` is a long Retry-After. Every request is recorded with its
`time.monotonic()` arrival time, path, query and answered status.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import numpy as np
import pandas as pd

from sigmasight_pipeline.calendar import sessions

BarSource = Callable[[str, list[date]], pd.DataFrame]
TIMEZONE = "America/New_York"
RANGE_PREFIX = "/v2/aggs/ticker/"
GROUPED_PREFIX = "/v2/aggs/grouped/locale/us/market/stocks/"
SHORT_INTEREST_PATH = "/stocks/v1/short-interest"
FLOAT_PATH = "/stocks/vX/float"
DETAILS_PREFIX = "/v3/reference/tickers/"
SPLITS_PATH = "/v3/reference/splits"
MISSING = object()  # bad_close(..., MISSING): the bar has no "c" at all
NOT_AUTHORIZED = {
    "status": "NOT_AUTHORIZED",
    "message": "You are not entitled to this data. Please upgrade your plan at "
    "https://polygon.io/pricing",
}
ETF_TICKERS = frozenset({"SPY", "MTUM", "VTV", "VUG", "QUAL", "IWM", "SPLV", "QQQ", "DIA"})
SIC_CODES = [
    ("3571", "ELECTRONIC COMPUTERS"),
    ("7372", "SERVICES-PREPACKAGED SOFTWARE"),
    ("3674", "SEMICONDUCTORS & RELATED DEVICES"),
    ("6021", "NATIONAL COMMERCIAL BANKS"),
    ("2834", "PHARMACEUTICAL PREPARATIONS"),
    ("2911", "PETROLEUM REFINING"),
    ("5331", "RETAIL-VARIETY STORES"),
    ("4911", "ELECTRIC SERVICES"),
]


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    t: float  # time.monotonic() at arrival
    path: str  # decoded, without the query
    query: dict[str, str]
    status: int  # what was (or, for a slow fault, would have been) answered
    fault: str | None = None


@dataclass
class Fault:
    """A queued fault: applies to the next `times` requests whose target (path and query, as
    sent) contains `match`."""

    kind: str  # "status" | "soft_error" | "slow" | "malformed"
    times: int = 1
    match: str = ""
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class ShortInterestRecord:
    ticker: str
    settlement_date: date
    short_interest: int
    avg_daily_volume: int

    @property
    def days_to_cover(self) -> float:
        return round(self.short_interest / self.avg_daily_volume, 2)


def settlement_dates(start: date, end: date) -> list[date]:
    """FINRA-like settlement dates (15th and month end, moved back to a weekday) in range."""
    out = []
    month = date(start.year, start.month, 1)
    while month <= end:
        next_month = (month + timedelta(days=32)).replace(day=1)
        for d in (month.replace(day=15), next_month - timedelta(days=1)):
            while d.weekday() >= 5:
                d -= timedelta(days=1)
            if start <= d <= end:
                out.append(d)
        month = next_month
    return out


def _unit(*parts: object) -> float:
    return zlib.crc32("|".join(map(str, parts)).encode()) / 2**32


def default_short_interest(ticker: str, start: date, end: date) -> list[ShortInterestRecord]:
    """Deterministic short interest for any ticker on the settlement dates in [start, end]."""
    return [
        ShortInterestRecord(
            ticker,
            d,
            int(1_000_000 + 9_000_000 * _unit(ticker, d, "si")),
            int(500_000 + 2_000_000 * _unit(ticker, d, "adv")),
        )
        for d in settlement_dates(start, end)
    ]


def default_free_float(ticker: str) -> int:
    return int(50_000_000 + 950_000_000 * _unit(ticker, "float"))


class FakePolygon:
    """The server; use as a context manager or call `start()` / `stop()`."""

    def __init__(
        self,
        bars: BarSource,
        *,
        universe: Sequence[str] = (),
        unknown: Iterable[str] = (),
        api_key: str = "test-key",
        page_size: int = 50_000,
        short_interest: Callable[[str, date, date], list[ShortInterestRecord]] | None = None,
        free_float: Callable[[str], int | None] | None = None,
    ) -> None:
        self.bars = bars
        self.universe = list(universe)
        self.unknown = {u.upper() for u in unknown}
        self.api_key = api_key
        self.page_size = page_size
        self.short_interest_source = short_interest or default_short_interest
        self.free_float = free_float or default_free_float
        self.faults: list[Fault] = []
        self.bad_closes: dict[tuple[str, date], object] = {}
        self.conflicting: dict[tuple[str, date], float] = {}
        self.empty_days: set[date] = set()
        self.delisted: dict[str, date] = {}
        self.options_forbidden = False
        self.split_events: list[tuple[str, date, float, float]] = []
        self.details: dict[str, dict[str, Any] | None] = {}
        self.today: date | None = None  # set: serve only short interest published by then
        self.log: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakePolygon:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-polygon", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePolygon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- faults ----------------------------------------------------------------------------

    def fail(
        self, status: int, times: int = 1, *, retry_after: str | None = None, match: str = ""
    ) -> None:
        """Answer the next `times` matching requests with `status` (and Retry-After)."""
        self._queue(Fault("status", times, match, status=status, retry_after=retry_after))

    def soft_error(self, times: int = 1, *, match: str = "") -> None:
        """Answer the next `times` matching requests 200 with `{"status": "ERROR", ...}`."""
        self._queue(Fault("soft_error", times, match))

    def slow(self, delay: float, times: int = 1, *, match: str = "") -> None:
        """Hold the next `times` matching requests for `delay` seconds before answering."""
        self._queue(Fault("slow", times, match, delay=delay))

    def malformed(self, times: int = 1, *, match: str = "") -> None:
        """Answer the next `times` matching requests 200 with a truncated JSON body."""
        self._queue(Fault("malformed", times, match))

    def _queue(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match in path:
                    fault.times -= 1
                    return fault
        return None

    # -- planted data ----------------------------------------------------------------------

    def bad_close(self, symbol: str, day: date, close: object) -> None:
        """Serve `close` (0, -1, NaN, inf, or MISSING for no "c") for `symbol` on `day`."""
        self.bad_closes[(symbol.upper(), day)] = close

    def conflicting_bar(self, symbol: str, day: date, close: float) -> None:
        """Serve a second bar for `symbol` on `day` with another close."""
        self.conflicting[(symbol.upper(), day)] = close

    def ticker_details(self, ticker: str) -> dict[str, Any] | None:
        """Polygon's ticker details for `ticker` (None: 404); `details` overrides."""
        if ticker in self.details:
            return self.details[ticker]
        if ticker.upper() in self.unknown or ticker.startswith("O:"):
            return None
        if ticker.upper() in ETF_TICKERS:
            return {"ticker": ticker, "name": f"{ticker} ETF", "type": "ETF", "active": True}
        code, description = SIC_CODES[zlib.crc32(ticker.encode()) % len(SIC_CODES)]
        return {
            "ticker": ticker,
            "name": f"{ticker} Inc.",
            "type": "CS",
            "active": ticker.upper() not in self.delisted,
            "sic_code": code,
            "sic_description": description,
        }

    # -- inspection ------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self.log)

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self.log.append(entry)

    def max_in_window(self, seconds: float) -> int:
        """Most requests that arrived within any half-open window of `seconds`."""
        times = sorted(r.t for r in self.requests)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def expected_short_interest(self, ticker: str, start: date, end: date) -> list[Any]:
        return self.short_interest_source(ticker, start, end)

    # -- data ------------------------------------------------------------------------------

    def _served_days(self, symbol: str, days: list[date]) -> list[date]:
        if symbol.upper() in self.unknown:
            return []
        last = self.delisted.get(symbol.upper())
        return [d for d in days if d not in self.empty_days and (last is None or d <= last)]

    def _bar_jsons(self, symbol: str, days: list[date], stamp_hour: int) -> list[dict[str, Any]]:
        frame = self.bars(symbol, self._served_days(symbol, days))
        out = []
        for row in frame.itertuples(index=False):
            bar = _bar_json(row, stamp_hour)
            key = (symbol.upper(), row.trade_date)
            if key in self.bad_closes:
                close = self.bad_closes[key]
                if close is MISSING:
                    del bar["c"]
                else:
                    bar["c"] = close
            out.append(bar)
            if key in self.conflicting:
                out.append({**bar, "c": self.conflicting[key]})
        return out

    def range_results(self, ticker: str, start: date, end: date) -> list[dict[str, Any]]:
        days = [d.date() for d in sessions(start, end)]
        return self._bar_jsons(ticker.removeprefix("O:"), days, stamp_hour=0)

    def grouped_results(self, day: date) -> list[dict[str, Any]]:
        if not len(sessions(day, day)):
            return []
        return [
            {"T": symbol, **bar}
            for symbol in self.universe
            for bar in self._bar_jsons(symbol, [day], stamp_hour=16)
        ]


def _bar_json(row: Any, stamp_hour: int) -> dict[str, Any]:
    stamp = pd.Timestamp(row.trade_date).tz_localize(TIMEZONE) + pd.Timedelta(hours=stamp_hour)
    return {
        "v": float(row.volume),
        "vw": round((row.high + row.low + row.close) / 3, 4),
        "o": float(row.open),
        "c": float(row.close),
        "h": float(row.high),
        "l": float(row.low),
        "t": int(stamp.timestamp() * 1000),
        "n": int(row.volume) // 100 + 1,
    }


def _parse_day(value: str) -> date:
    if value.isdigit() and len(value) > 8:  # epoch milliseconds
        return pd.Timestamp(int(value), unit="ms", tz="UTC").tz_convert(TIMEZONE).date()
    return date.fromisoformat(value)


@dataclass
class _Page:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakePolygon

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        arrived = time.monotonic()
        fake = self.server_fake
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query))
        if "cursor" in query:  # a next_url: the cursor carries the original query
            query = dict(parse_qsl(base64.urlsafe_b64decode(query["cursor"]).decode()))

        if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            page = _Page({"status": "ERROR", "error": "Unknown API Key"}, 401)
        else:
            fault = fake._take_fault(unquote(self.path))
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                error = "You've exceeded the maximum requests per minute, please wait or upgrade."
                body = {"status": "ERROR", "error": error if fault.status == 429 else "boom"}
                if fault.status == 403:
                    body = NOT_AUTHORIZED
                elif fault.status == 401:
                    body = {"status": "ERROR", "error": "Unknown API Key"}
                fake.record(Recorded(arrived, path, query, fault.status, "status"))
                self._send(_Page(body, fault.status, headers))
                return
            if fault is not None and fault.kind == "soft_error":
                fake.record(Recorded(arrived, path, query, 200, "soft_error"))
                body = {"status": "ERROR", "request_id": "fake", "error": "Internal error, retry"}
                self._send(_Page(body))
                return
            if fault is not None and fault.kind == "slow":
                fake.record(Recorded(arrived, path, query, 200, "slow"))
                time.sleep(fault.delay)
                self._send(self._answer(path, query), quiet=True)
                return
            if fault is not None and fault.kind == "malformed":
                fake.record(Recorded(arrived, path, query, 200, "malformed"))
                self._send_raw(200, b'{"status":"OK","results":[{"o": 1.0, "c"', {})
                return
            page = self._answer(path, query)
        fake.record(Recorded(arrived, path, query, page.status))
        self._send(page)

    def _answer(self, path: str, query: dict[str, str]) -> _Page:
        fake = self.server_fake
        request_id = f"fake-{zlib.crc32(path.encode()):08x}"
        if path.startswith(RANGE_PREFIX):
            parts = path[len(RANGE_PREFIX) :].split("/")
            if len(parts) != 6 or parts[1:4] != ["range", "1", "day"]:
                return _Page({"status": "NOT_FOUND", "message": "fake serves 1/day only"}, 404)
            ticker = parts[0]
            if ticker.startswith("O:") and fake.options_forbidden:
                return _Page({**NOT_AUTHORIZED, "request_id": request_id}, 403)
            results = fake.range_results(ticker, _parse_day(parts[4]), _parse_day(parts[5]))
            body: dict[str, Any] = {"ticker": ticker, "adjusted": True}
            return _Page(self._paged(body, results, path, query, request_id))
        if path.startswith(GROUPED_PREFIX):
            results = fake.grouped_results(date.fromisoformat(path[len(GROUPED_PREFIX) :]))
            body = {
                "queryCount": len(results),
                "resultsCount": len(results),
                "adjusted": True,
                "status": "OK",
                "request_id": request_id,
            }
            if results:
                body["results"] = results
            return _Page(body)
        if path == SHORT_INTEREST_PATH:
            ticker = query.get("ticker", "")
            start = date.fromisoformat(query.get("settlement_date.gte", "2000-01-01"))
            end = date.fromisoformat(query.get("settlement_date.lte", "2100-01-01"))
            records = (
                []
                if not ticker or ticker.upper() in fake.unknown
                else fake.short_interest_source(ticker, start, end)
            )
            if fake.today is not None:  # FINRA publishes on the 7th business day after
                records = [
                    r
                    for r in records
                    if pd.Timestamp(np.busday_offset(r.settlement_date, 7)).date() <= fake.today
                ]
            results = [
                {
                    "ticker": r.ticker,
                    "settlement_date": r.settlement_date.isoformat(),
                    "short_interest": r.short_interest,
                    "avg_daily_volume": r.avg_daily_volume,
                    "days_to_cover": r.days_to_cover,
                }
                for r in records
            ]
            return _Page(self._paged({}, results, path, query, request_id))
        if path == FLOAT_PATH:
            tickers = [t for t in query.get("ticker.any_of", "").split(",") if t]
            results = []
            for t in tickers:
                shares = None if t.upper() in fake.unknown else fake.free_float(t)
                if shares:
                    results.append(
                        {
                            "ticker": t,
                            "effective_date": "2025-01-02",
                            "free_float": shares,
                            "free_float_percent": 80.0,
                        }
                    )
            return _Page({"results": results, "status": "OK", "request_id": request_id})
        if path.startswith(DETAILS_PREFIX):
            details = fake.ticker_details(path[len(DETAILS_PREFIX) :])
            if details is None:
                return _Page({"status": "NOT_FOUND", "message": "Ticker not found."}, 404)
            return _Page({"results": details, "status": "OK", "request_id": request_id})
        if path == SPLITS_PATH:
            start = date.fromisoformat(query.get("execution_date.gte", "1900-01-01"))
            end = date.fromisoformat(query.get("execution_date.lte", "2100-01-01"))
            results = [
                {
                    "id": f"E{zlib.crc32(f'{t}{d}'.encode()):08x}",
                    "ticker": t,
                    "execution_date": d.isoformat(),
                    "split_from": split_from,
                    "split_to": split_to,
                }
                for t, d, split_from, split_to in sorted(fake.split_events, key=lambda e: e[1])
                if start <= d <= end and query.get("ticker", t) == t
            ]
            return _Page(self._paged({}, results, path, query, request_id))
        return _Page({"status": "NOT_FOUND", "message": f"fake has no {path}"}, 404)

    def _paged(
        self,
        body: dict[str, Any],
        results: list[dict[str, Any]],
        path: str,
        query: dict[str, str],
        request_id: str,
    ) -> dict[str, Any]:
        fake = self.server_fake
        offset = int(query.get("offset", "0"))
        size = min(fake.page_size, int(query.get("limit", str(fake.page_size))))
        page = results[offset : offset + size]
        body = {
            **body,
            "queryCount": len(page),
            "resultsCount": len(page),
            "count": len(page),
            "status": "OK",
            "request_id": request_id,
        }
        if page:
            body["results"] = page
        if offset + size < len(results):
            cursor = {k: v for k, v in query.items() if k != "offset"}
            cursor["offset"] = str(offset + size)
            token = base64.urlsafe_b64encode(urlencode(cursor).encode()).decode()
            body["next_url"] = f"{fake.url}{path}?cursor={token}"
        return body

    def _send(self, page: _Page, quiet: bool = False) -> None:
        data = json.dumps(page.body).encode()
        try:
            self._send_raw(page.status, data, page.headers)
        except OSError:  # the client gave up (a slow fault)
            if not quiet:
                raise

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
