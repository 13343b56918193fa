"""A fake Yahoo Finance server on 127.0.0.1 for tests: real HTTP, the chart API's JSON.

The yfinance provider sends every request through its own session, which (in tests) rewrites
`https://*.yahoo.com/...` to this server's `http://127.0.0.1:<port>/...`. Served:

* `/v8/finance/chart/{symbol}` with `period1`/`period2` (epoch seconds) or `range=1d`: daily
  bars in Yahoo's format (timestamps at the 09:30 New York open, `indicators.quote` with
  unadjusted OHLCV, `indicators.adjclose`, `events.splits`); 404 with Yahoo's "No data found,
  symbol may be delisted" error for an unknown symbol.
* `/v1/test/getcrumb` (a crumb), `/` (the cookie page fc.yahoo.com), `/v10/finance/
  quoteSummary/{symbol}` (sector and industry, `assetProfile`).

Bars come from `bars(symbol, days) -> DataFrame[BAR_COLUMNS]`. Planted per test: `unknown`,
`splits` ({symbol: [(day, numerator, denominator)]}, which also makes `adjclose` the
split-adjusted close), `profiles` ({symbol: (sector, industry)}), and queued faults
(`fail(status, times, match, retry_after)`). Every request is recorded (`requests`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pandas as pd

from sigmasight_pipeline.calendar import sessions

TIMEZONE = "America/New_York"
CHART = "/v8/finance/chart/"
SUMMARY = "/v10/finance/quoteSummary/"


@dataclass(frozen=True)
class Seen:
    t: float
    host: str  # the Yahoo host the client meant (the X-Yahoo-Host header the session adds)
    path: str
    query: dict[str, str]
    status: int


@dataclass
class Fault:
    status: int
    times: int
    match: str
    retry_after: str | None = None


class FakeYahoo:
    def __init__(self, bars: Callable[[str, list[date]], pd.DataFrame]) -> None:
        self.bars = bars
        self.unknown: set[str] = set()
        self.splits: dict[str, list[tuple[date, float, float]]] = {}
        self.profiles: dict[str, tuple[str, str]] = {}
        self.faults: list[Fault] = []
        self.log: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeYahoo:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(
        self, status: int, times: int = 1, *, match: str = "", retry_after: str | None = None
    ) -> None:
        with self._lock:
            self.faults.append(Fault(status, times, match, retry_after))

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match in target:
                    fault.times -= 1
                    return fault
        return None

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.log)

    def chart_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(CHART)]

    def chart(self, symbol: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if symbol.upper() in self.unknown:
            error = {"code": "Not Found", "description": "No data found, symbol may be delisted"}
            return 404, {"chart": {"result": None, "error": error}}
        if "period1" in query:
            start = pd.Timestamp(int(query["period1"]), unit="s", tz="UTC").tz_convert(TIMEZONE)
            end = pd.Timestamp(int(query["period2"]), unit="s", tz="UTC").tz_convert(TIMEZONE)
            days = [
                d.date() for d in sessions(start.date(), end.date()) if d < end.tz_localize(None)
            ]
        else:  # range=1d: the last session (yfinance asks this for the timezone)
            days = [d.date() for d in sessions("2025-06-30", "2025-06-30")]
        frame = self.bars(symbol, days).sort_values("trade_date")
        splits = [s for s in self.splits.get(symbol.upper(), [])]
        factor = pd.Series(1.0, index=frame["trade_date"])
        for day, numerator, denominator in splits:  # bars before a split: adjust down
            factor[factor.index < day] *= denominator / numerator
        stamps = [_open_stamp(d) for d in frame["trade_date"]]
        raw = frame[["open", "high", "low", "close"]].div(factor.to_numpy(), axis=0)
        result = {
            "meta": {
                "currency": "USD",
                "symbol": symbol,
                "exchangeName": "NMS",
                "instrumentType": "EQUITY",
                "firstTradeDate": 345479400,
                "regularMarketTime": stamps[-1] if stamps else 0,
                "gmtoffset": -14400,
                "timezone": "EDT",
                "exchangeTimezoneName": TIMEZONE,
                "priceHint": 2,
                "dataGranularity": "1d",
                "range": query.get("range", ""),
                "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "max"],
            },
            "timestamp": stamps,
            "indicators": {
                "quote": [
                    {
                        "open": raw["open"].round(4).tolist(),
                        "high": raw["high"].round(4).tolist(),
                        "low": raw["low"].round(4).tolist(),
                        "close": raw["close"].round(4).tolist(),
                        "volume": frame["volume"].astype(int).tolist(),
                    }
                ],
                "adjclose": [{"adjclose": frame["close"].round(4).tolist()}],
            },
        }
        events = {
            str(_open_stamp(d)): {
                "date": _open_stamp(d),
                "numerator": n,
                "denominator": m,
                "splitRatio": f"{n:g}:{m:g}",
            }
            for d, n, m in splits
            if d in set(frame["trade_date"])
        }
        if events:
            result["events"] = {"splits": events}
        return 200, {"chart": {"result": [result], "error": None}}


def _open_stamp(day: date) -> int:
    """Epoch seconds of the session's 09:30 New York open (Yahoo stamps daily bars so)."""
    return int(pd.Timestamp(day).tz_localize(TIMEZONE).replace(hour=9, minute=30).timestamp())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeYahoo

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        arrived = time.monotonic()
        fake = self.server_fake
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query))
        host = self.headers.get("X-Yahoo-Host", "")
        fault = fake._take_fault(unquote(self.path))
        headers: dict[str, str] = {}
        if fault is not None:
            status, body = fault.status, b"<html>Too Many Requests</html>"
            if fault.retry_after:
                headers["Retry-After"] = fault.retry_after
            ctype = "text/html"
        elif path.startswith(CHART):
            status, data = fake.chart(path[len(CHART) :], query)
            body, ctype = json.dumps(data).encode(), "application/json"
        elif path == "/v1/test/getcrumb":
            status, body, ctype = 200, b"fakecrumb", "text/plain"
        elif path.startswith(SUMMARY):
            symbol = path[len(SUMMARY) :]
            profile = fake.profiles.get(symbol.upper())
            if profile is None:
                status = 404
                data = {"quoteSummary": {"result": None, "error": {"code": "Not Found"}}}
            else:
                status = 200
                profile_json = {"sector": profile[0], "industry": profile[1]}
                data = {"quoteSummary": {"result": [{"assetProfile": profile_json}], "error": None}}
            body, ctype = json.dumps(data).encode(), "application/json"
        elif path in ("", "/"):
            status, body, ctype = 200, b"<html>ok</html>", "text/html"
            headers["Set-Cookie"] = "A3=fake; Path=/"
        else:
            status, body, ctype = 404, b"<html>not here</html>", "text/html"
        with fake._lock:
            fake.log.append(Seen(arrived, host, path, query, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
