"""Polygon reference data: short interest, free float, sector/industry and splits.

A mixin of `PolygonMarketData` (which provides `client`, `cache`, `now`, `fetch_float` and
`_run`). Every answer is cached in the database (`provider_cache.ProviderCache`), so a re-run
asks Polygon nothing it already answered. Sector and industry come from Polygon's ticker
details (`/v3/reference/tickers/{ticker}`: `sic_description` is the industry; the SIC code maps
to a GICS-like sector where it can, else to its SIC division), never from yfinance; failures
are logged in one line per call and never block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from sigmasight_pipeline.analytics.instruments import is_option_symbol
from sigmasight_pipeline.resources.market_data import (
    SECURITY_INFO_COLUMNS,
    SHORT_INTEREST_COLUMNS,
    SPLIT_COLUMNS,
    MarketDataError,
    empty_frame,
)

if TYPE_CHECKING:
    from massive import RESTClient

    from sigmasight_pipeline.resources.provider_cache import ProviderCache

logger = logging.getLogger("sigmasight_pipeline.resources.polygon")

# FINRA settles short interest twice a month; a settlement older than this is not "as of" a day.
SETTLEMENT_LOOKBACK_DAYS = 45
FLOAT_BATCH = 100
ETF_TYPES = frozenset({"ETF", "ETN", "ETV", "ETS", "FUND"})

CD, CS, EN, FIN, HC, IND, IT, MAT, RE, COMM, UTIL = (
    "Consumer Discretionary", "Consumer Staples", "Energy", "Financials", "Health Care",
    "Industrials", "Information Technology", "Materials", "Real Estate",
    "Communication Services", "Utilities",
)  # fmt: skip
# SIC code prefixes to GICS-like sectors; the longest matching prefix wins.
SIC_SECTORS: dict[str, str] = {
    **dict.fromkeys(["01", "02", "07", "08", "09", "20", "21", "54", "514", "5331", "5912"], CS),
    **dict.fromkeys(["10", "14", "24", "26", "28", "30", "32", "33"], MAT),
    **dict.fromkeys(["12", "13", "29", "5171", "5172"], EN),
    **dict.fromkeys(["15", "16", "17", "34", "35", "37", "40", "41", "42", "44", "45"], IND),
    **dict.fromkeys(["46", "47", "50", "51", "73", "87", "4953", "4955"], IND),
    **dict.fromkeys(["22", "23", "25", "31", "39", "363", "365", "371", "52", "53", "55"], CD),
    **dict.fromkeys(["56", "57", "58", "59", "70", "72", "75", "79", "82", "5311"], CD),
    **dict.fromkeys(["283", "384", "385", "3826", "5122", "80", "8731"], HC),
    **dict.fromkeys(["357", "36", "366", "367", "38", "386", "5045", "737"], IT),
    **dict.fromkeys(["27", "48", "78", "7812"], COMM),
    **dict.fromkeys(["2844"], CS),
    **dict.fromkeys(["372", "373", "374", "376"], IND),
    **dict.fromkeys(["49"], UTIL),
    **dict.fromkeys(["60", "61", "62", "63", "64", "67"], FIN),
    **dict.fromkeys(["65", "6798"], RE),
}
SIC_DIVISIONS: list[tuple[int, str]] = [  # (last 2-digit major group, division)
    (9, "Agriculture, Forestry and Fishing"),
    (14, "Mining"),
    (17, "Construction"),
    (39, "Manufacturing"),
    (49, "Transportation, Communications, Electric, Gas and Sanitary Services"),
    (51, "Wholesale Trade"),
    (59, "Retail Trade"),
    (67, "Finance, Insurance and Real Estate"),
    (89, "Services"),
    (97, "Public Administration"),
    (99, "Nonclassifiable Establishments"),
]


def sector_from_sic(sic_code: str | None) -> str | None:
    """A GICS-like sector for a SIC code, else its SIC division; None without a code."""
    code = (sic_code or "").strip()
    if not code.isdigit():
        return None
    for length in range(len(code), 1, -1):
        if code[:length] in SIC_SECTORS:
            return SIC_SECTORS[code[:length]]
    major = int(code[:2])
    return next((name for last, name in SIC_DIVISIONS if major <= last), None)


class PolygonReferenceData:
    """Short interest, free float, sector/industry and splits for `PolygonMarketData`."""

    client: RESTClient
    cache: ProviderCache
    now: Callable[[], datetime]
    fetch_float: bool
    _info_memo: dict[str, tuple[str | None, str | None]]
    _run: Callable[..., Any]

    # -- short interest --------------------------------------------------------------------

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """Short interest as of each day: the latest settlement on or before it (at most
        SETTLEMENT_LOOKBACK_DAYS old).

        One short-interest call per stock that has a settlement due and not yet stored
        (options are skipped); answers are cached per settlement date, so a re-run asks
        nothing. `days_to_cover` is Polygon's; `short_interest_pct_float` is 100 * short
        interest / free float, with the free float from Polygon's float endpoint (the current
        figure, not as of the day); NaN when that endpoint has none (e.g. not in the plan).
        A failed symbol is logged and left out (asked again next run); a bad key raises.
        """
        from sigmasight_pipeline.resources.polygon import PolygonHTTPError, polygon_ticker

        stocks = [s for s in dict.fromkeys(symbols) if not is_option_symbol(s)]
        day_list = sorted({pd.Timestamp(d).date() for d in days})
        if not stocks or not day_list:
            return empty_frame(SHORT_INTEREST_COLUMNS)
        first = day_list[0] - timedelta(days=SETTLEMENT_LOOKBACK_DAYS)
        last = day_list[-1]
        now = self.now()
        for symbol, (start, end) in self.cache.short_interest_to_fetch(
            stocks, first, last, now
        ).items():
            ticker = polygon_ticker(symbol)
            what = f"short interest for {ticker} from {start} to {end}"
            try:
                results = self._run(
                    what,
                    lambda ticker=ticker, start=start, end=end: list(
                        self.client.list_short_interest(
                            ticker=ticker,
                            settlement_date_gte=start.isoformat(),
                            settlement_date_lte=end.isoformat(),
                            limit=1000,
                        )
                    ),
                )
            except PolygonHTTPError as exc:
                if exc.status == 401:
                    raise MarketDataError(
                        f"Polygon rejected POLYGON_API_KEY ({exc.short}): check the key"
                    ) from exc
                if exc.status == 403:
                    logger.warning(
                        "Polygon short interest is not in POLYGON_API_KEY's plan (%s); "
                        "no short interest this run",
                        exc.short,
                    )
                    break
                logger.warning("Polygon %s failed: %s", what, exc.short)
                continue
            except MarketDataError as exc:
                logger.warning("%s (asked again next run)", exc)
                continue
            records = pd.DataFrame(
                [
                    (date.fromisoformat(r.settlement_date), r.short_interest, r.days_to_cover)
                    for r in results
                    if r.settlement_date
                ],
                columns=["settlement_date", "short_interest", "days_to_cover"],
            ).drop_duplicates("settlement_date", keep="last")
            self.cache.store_short_interest(symbol, start, end, records, now)

        settled = self.cache.short_interest(stocks, first, last)
        if settled.empty:
            return empty_frame(SHORT_INTEREST_COLUMNS)
        grid = pd.DataFrame(
            [(s, d) for s in settled["symbol"].unique() for d in day_list],
            columns=["symbol", "trade_date"],
        )
        grid["day"] = pd.to_datetime(grid["trade_date"])
        asof = pd.merge_asof(
            grid.sort_values("day"),
            settled.sort_values("settlement_date"),
            left_on="day",
            right_on="settlement_date",
            by="symbol",
            direction="backward",
            tolerance=pd.Timedelta(days=SETTLEMENT_LOOKBACK_DAYS),
        ).dropna(subset=["settlement_date"])
        free_float = self._free_float(list(asof["symbol"].unique())) if self.fetch_float else {}
        shares = asof["symbol"].map(free_float).astype(float)
        asof["short_interest_pct_float"] = 100.0 * asof["short_interest"].astype(float) / shares
        asof["days_to_cover"] = asof["days_to_cover"].astype(float)
        out = asof.sort_values(["symbol", "day"], ignore_index=True)
        return out[SHORT_INTEREST_COLUMNS]

    def _free_float(self, symbols: list[str]) -> dict[str, float]:
        """Free float shares by symbol (cached); a symbol without one is absent."""
        from sigmasight_pipeline.resources.polygon import PolygonHTTPError, polygon_ticker

        now = self.now()
        known = self.cache.free_float(symbols, now)
        by_ticker = {polygon_ticker(s): s for s in symbols if s not in known}
        tickers = sorted(by_ticker)
        for i in range(0, len(tickers), FLOAT_BATCH):
            batch = tickers[i : i + FLOAT_BATCH]
            try:
                rows = self._run(
                    f"free float for {len(batch)} tickers",
                    lambda batch=batch: list(
                        self.client.list_stocks_floats(ticker_any_of=",".join(batch), limit=5000)
                    ),
                )
            except PolygonHTTPError as exc:
                logger.warning("No free float, so no short interest %% of float: %s", exc)
                if exc.status in (403, 404):  # an answer: remember it for a while
                    answered = {by_ticker[t]: (None, None) for t in batch}
                    self.cache.store_free_float(answered, now)
                    known.update(dict.fromkeys(answered))
                break
            except MarketDataError as exc:
                logger.warning("No free float, so no short interest %% of float: %s", exc)
                break
            latest: dict[str, tuple[float | None, date | None]] = {
                by_ticker[t]: (None, None) for t in batch
            }
            for r in rows:
                if r.ticker in by_ticker and r.free_float:
                    effective = date.fromisoformat(r.effective_date) if r.effective_date else None
                    seen = latest[by_ticker[r.ticker]][1]
                    if seen is None or (effective is not None and effective >= seen):
                        latest[by_ticker[r.ticker]] = (float(r.free_float), effective)
            self.cache.store_free_float(latest, now)
            known.update({s: v for s, (v, _) in latest.items()})
        return {s: v for s, v in known.items() if v is not None}

    # -- sector and industry ---------------------------------------------------------------

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry from Polygon's ticker details; cached in this process and the
        database. Options get None. A failure is logged (one line per call, naming how many
        symbols and the first error), leaves None and stops further lookups; never raises."""
        from sigmasight_pipeline.resources.polygon import PolygonHTTPError, polygon_ticker

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
        answered: list[tuple[str, str | None, str | None]] = []
        failed: list[str] = []
        first_error = ""
        for symbol in wanted:
            if symbol in self._info_memo:
                continue
            if first_error:
                failed.append(symbol)
                continue
            ticker = polygon_ticker(symbol)
            try:
                details = self._run(
                    f"ticker details for {ticker}",
                    lambda ticker=ticker: self.client.get_ticker_details(ticker),
                    max_retries=1,
                )
            except PolygonHTTPError as exc:
                if exc.status == 404:
                    details = None
                else:
                    failed.append(symbol)
                    first_error = str(exc)
                    continue
            except MarketDataError as exc:
                failed.append(symbol)
                first_error = str(exc)
                continue
            found = _sector_industry(details)
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
                "No sector/industry for %d symbol(s) (%s%s): %s",
                len(failed),
                ", ".join(failed[:5]),
                ", ..." if len(failed) > 5 else "",
                first_error,
            )
        rows = [(s, *self._info_memo.get(s, (None, None))) for s in dict.fromkeys(symbols)]
        return pd.DataFrame(rows, columns=SECURITY_INFO_COLUMNS)

    # -- splits ----------------------------------------------------------------------------

    def splits(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Splits executed from `start` to `end` (SPLIT_COLUMNS) from Polygon's splits
        reference: one paged call for every ticker over the range, cached; a failure is
        logged and leaves what was cached."""
        from sigmasight_pipeline.resources.polygon import polygon_ticker

        by_ticker: dict[str, list[str]] = {}
        for s in dict.fromkeys(symbols):
            if not is_option_symbol(s):
                by_ticker.setdefault(polygon_ticker(s), []).append(s)
        if not by_ticker:
            return empty_frame(SPLIT_COLUMNS)
        now = self.now()
        if not self.cache.splits_known(start, end, now):
            try:
                events = self._run(
                    f"splits executed from {start} to {end}",
                    lambda: list(
                        self.client.list_splits(
                            execution_date_gte=start.isoformat(),
                            execution_date_lte=end.isoformat(),
                            limit=1000,
                        )
                    ),
                )
            except MarketDataError as exc:
                logger.warning("%s (splits asked again next run)", exc)
            else:
                frame = pd.DataFrame(
                    [
                        (e.ticker, date.fromisoformat(e.execution_date), e.split_from, e.split_to)
                        for e in events
                        if e.ticker and e.execution_date and e.split_from and e.split_to
                    ],
                    columns=SPLIT_COLUMNS,
                ).drop_duplicates(["symbol", "execution_date"], keep="last")
                self.cache.store_splits(frame, start, end, now)
        stored = self.cache.splits(list(by_ticker), start, end)
        rows = [
            (symbol, r.execution_date, float(r.split_from), float(r.split_to))
            for r in stored.itertuples(index=False)
            for symbol in by_ticker[r.symbol]
        ]
        return pd.DataFrame(rows, columns=SPLIT_COLUMNS).sort_values(
            ["symbol", "execution_date"], ignore_index=True
        )


def _sector_industry(details: Any) -> tuple[str | None, str | None]:
    if details is None:
        return None, None
    if (getattr(details, "type", None) or "").upper() in ETF_TYPES:
        return "ETF", "Exchange Traded Fund"
    industry = (getattr(details, "sic_description", None) or "").strip() or None
    return sector_from_sic(getattr(details, "sic_code", None)), industry
