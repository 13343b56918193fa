"""A fake Polygon (Massive) REST server on 127.0.0.1 for tests: real HTTP, Polygon's JSON.

Serves what `PolygonMarketData` calls through the real `massive` client:

* `/v2/aggs/ticker/{ticker}/range/1/day/{from}/{to}` (per-ticker daily bars, `next_url` pages)
* `/v2/aggs/grouped/locale/us/market/stocks/{date}` (every `universe` stock on one day)
* `/stocks/v1/short-interest` (filters `ticker`, `settlement_date.gte/.lte`; paged)
* `/stocks/vX/float` (filter `ticker.any_of`)

Bars come from a deterministic source `bars(symbol, days) -> DataFrame[BAR_COLUMNS]` (plain OCC
for options: the server strips `O:`), stamped like Polygon: range bars at the session's New York
midnight, grouped bars at its 16:00 close. Faults are queued per test (`fail`, `slow`,
`malformed`) and consumed by the next matching requests. Every request is recorded with its
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

import pandas as pd

from sigmasight_pipeline.calendar import sessions

BarSource = Callable[[str, list[date]], pd.DataFrame]
TIMEZONE = "America/New_York"
RANGE_PREFIX = "/v2/aggs/ticker/"
GROUPED_PREFIX = "/v2/aggs/grouped/locale/us/market/stocks/"
SHORT_INTEREST_PATH = "/stocks/v1/short-interest"
FLOAT_PATH = "/stocks/vX/float"


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

    kind: str  # "status" | "slow" | "malformed"
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

    def range_results(self, ticker: str, start: date, end: date) -> list[dict[str, Any]]:
        symbol = ticker.removeprefix("O:")
        days = [d.date() for d in sessions(start, end)]
        if symbol.upper() in self.unknown or not days:
            return []
        frame = self.bars(symbol, days)
        return [_bar_json(row, stamp_hour=0) for row in frame.itertuples(index=False)]

    def grouped_results(self, day: date) -> list[dict[str, Any]]:
        if not len(sessions(day, day)):
            return []
        results = []
        for symbol in self.universe:
            if symbol.upper() in self.unknown:
                continue
            frame = self.bars(symbol, [day])
            for row in frame.itertuples(index=False):
                results.append({"T": symbol, **_bar_json(row, stamp_hour=16)})
        return results


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
                fake.record(Recorded(arrived, path, query, fault.status, "status"))
                self._send(_Page(body, fault.status, headers))
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
