"""The market data interface every provider implements, the bar screening they share, and the
factory that picks one (SIGMASIGHT_MARKET_DATA = synthetic | polygon | files | yfinance)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

FACTOR_ETFS: dict[str, str] = {
    "Market": "SPY",
    "Momentum": "MTUM",
    "Value": "VTV",
    "Growth": "VUG",
    "Quality": "QUAL",
    "Size": "IWM",
    "Low Volatility": "SPLV",
}
SHORT_INTEREST_FACTOR = "Short Interest"
RATES_ETF = "TLT"  # the Rates factor: a long Treasury ETF (20+ years)
# Every symbol-level universe holds these, whatever the portfolios hold.
MARKET_ETFS = (*FACTOR_ETFS.values(), RATES_ETF)

BAR_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source"]
ISSUE_COLUMNS = ["symbol", "trade_date", "kind", "detail"]
SECURITY_INFO_COLUMNS = ["symbol", "sector", "industry"]
SHORT_INTEREST_COLUMNS = ["symbol", "trade_date", "short_interest_pct_float", "days_to_cover"]
SPLIT_COLUMNS = ["symbol", "execution_date", "split_from", "split_to"]
FAILED = "failed"  # the call for the pair failed (provider's message); fetch it again next run
REJECTED = "rejected"  # the provider sent a bad bar (close <= 0, non-finite, duplicates...)
PROVIDERS = ("synthetic", "polygon", "files", "yfinance")


class MarketDataError(RuntimeError):
    """A provider could not answer; the message names the symbol/call and what went wrong."""


def empty_frame(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


@dataclass
class BarsResult:
    """What `fetch_bars` found for the wanted (symbol, trade_date) pairs.

    `bars` (BAR_COLUMNS): only valid bars (finite close > 0), one row per (symbol, trade_date),
    only wanted pairs. `issues` (ISSUE_COLUMNS): one row per affected wanted pair, `kind`
    "failed" (the call failed: `detail` is the provider's message; retry next run) or
    "rejected" (the provider sent a bad bar; `detail` says what). A pair the provider simply
    has no bar for is in neither. `fatal`: one readable line when the provider stopped early
    (bad key, plan); the bars fetched before it are still in `bars`.
    """

    bars: pd.DataFrame = field(default_factory=lambda: empty_frame(BAR_COLUMNS))
    issues: pd.DataFrame = field(default_factory=lambda: empty_frame(ISSUE_COLUMNS))
    fatal: str | None = None


@runtime_checkable
class MarketDataProvider(Protocol):
    """Daily market data for stocks, ETFs and OCC option symbols (without `O:`).

    Every method returns a DataFrame with exactly the documented columns; `trade_date` is a
    `datetime.date`. Per-symbol and per-call failures never raise: `fetch_bars` reports them
    as issues, the others log them and leave the symbol out.
    """

    name: str

    def fetch_bars(self, wanted: pd.DataFrame) -> BarsResult:
        """Bars and issues for the (symbol, trade_date) pairs in `wanted`.

        `wanted` has columns `symbol` and `trade_date` (datetime.date) and holds exactly the
        pairs not yet stored, so a provider never fetches what the database already has.
        Option symbols are plain OCC (`AAPL250620C00150000`); a provider adds `O:` itself.
        `source` names where a bar came from ("synthetic", "polygon", "files", "yfinance").
        """
        ...

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        """`fetch_bars(wanted).bars` (kept until every caller reads the issues too)."""
        ...

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry (SECURITY_INFO_COLUMNS) of stocks and ETFs; None if unknown."""
        ...

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """Short interest (SHORT_INTEREST_COLUMNS) as of each day: % of float, days to cover."""
        ...

    def splits(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Splits (SPLIT_COLUMNS) executed from `start` to `end`; empty if the provider has none.
        `split_from` old shares become `split_to` new shares (a 7:1 split: 1 -> 7)."""
        ...


# -- helpers every provider uses -----------------------------------------------------------


def normalize_wanted(wanted: pd.DataFrame) -> pd.DataFrame:
    """`wanted` as unique (symbol: str, trade_date: datetime.date) pairs, in input order."""
    missing = {"symbol", "trade_date"} - set(wanted.columns)
    if missing:
        raise ValueError(f"wanted needs columns symbol and trade_date; missing {sorted(missing)}")
    if wanted.empty:
        return pd.DataFrame({"symbol": pd.Series(dtype=object), "trade_date": []})
    out = pd.DataFrame(
        {
            "symbol": wanted["symbol"].astype(str).to_numpy(dtype=object),
            "trade_date": pd.to_datetime(wanted["trade_date"], cache=False).dt.date.to_numpy(
                dtype=object
            ),
        }
    )
    return out.drop_duplicates(ignore_index=True)


def issues_for(pairs: pd.DataFrame, kind: str, detail: str | Sequence[str]) -> pd.DataFrame:
    """ISSUE_COLUMNS rows for `pairs` (symbol, trade_date) with one `detail` or one per pair."""
    if pairs.empty:
        return empty_frame(ISSUE_COLUMNS)
    return pd.DataFrame(
        {
            "symbol": pairs["symbol"].to_numpy(dtype=object),
            "trade_date": pairs["trade_date"].to_numpy(dtype=object),
            "kind": kind,
            "detail": detail if isinstance(detail, str) else list(detail),
        },
        columns=ISSUE_COLUMNS,
    )


def concat_issues(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_frame(ISSUE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[ISSUE_COLUMNS]
    return out.drop_duplicates(["symbol", "trade_date"]).sort_values(
        ["symbol", "trade_date"], ignore_index=True
    )


def _number(value: object) -> str:
    try:
        return repr(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return repr(value)


def screen_bars(pairs: pd.DataFrame | None, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a provider's raw bars into valid bars and "rejected" issues, for wanted pairs only.

    `pairs` is `normalize_wanted` output (None: every row of `raw` is a wanted pair); `raw`
    has BAR_COLUMNS and optionally `origin` (where each row came from, e.g. "AAPL.csv row 12",
    quoted in the issue). Rows for pairs not wanted are dropped; identical duplicates collapse;
    a (symbol, day) with different bars is rejected; a close that is missing, non-finite or
    <= 0 is rejected with its value.
    """
    if raw.empty or (pairs is not None and pairs.empty):
        return empty_frame(BAR_COLUMNS), empty_frame(ISSUE_COLUMNS)
    raw = raw.copy()
    if "origin" not in raw.columns:
        raw["origin"] = ""
    raw["close"] = pd.to_numeric(raw["close"], errors="coerce").astype(float)
    if pairs is not None:
        raw = raw.merge(pairs, on=["symbol", "trade_date"], how="inner")
    twice = raw.duplicated(["symbol", "trade_date"], keep=False)
    if twice.any():  # identical twins collapse first
        raw = raw.drop_duplicates(BAR_COLUMNS, ignore_index=True)
        twice = raw.duplicated(["symbol", "trade_date"], keep=False)
    issues = []
    if twice.any():
        clashing = raw[twice]
        grouped = clashing.groupby(["symbol", "trade_date"], sort=True)
        details = [
            f"{len(g)} different bars for the day: "
            + ", ".join(
                f"close {_number(c)}" + (f" ({o})" if o else "")
                for c, o in zip(g["close"], g["origin"], strict=True)
            )
            for _, g in grouped
        ]
        keys = pd.DataFrame(list(grouped.groups), columns=["symbol", "trade_date"])
        issues.append(issues_for(keys, REJECTED, details))
        raw = raw[~twice]

    close = raw["close"].to_numpy(dtype=float)
    bad = ~(np.isfinite(close) & (close > 0))
    if bad.any():
        rows = raw[bad]
        details = [
            (f"{o}: " if o else "")
            + (
                "close missing or NaN"
                if math.isnan(c)
                else f"close {c!r} is not a positive finite price"
            )
            for c, o in zip(rows["close"], rows["origin"], strict=True)
        ]
        issues.append(issues_for(rows, REJECTED, details))
        raw = raw[~bad]
    bars = raw.sort_values(["symbol", "trade_date"], ignore_index=True)[BAR_COLUMNS]
    return bars, concat_issues(issues)


# -- choosing a provider -------------------------------------------------------------------


def provider_name() -> str:
    name = os.environ.get("SIGMASIGHT_MARKET_DATA", "synthetic").strip().lower()
    _check_name(name)
    return name


def _check_name(name: str) -> None:
    if name not in PROVIDERS:
        raise ValueError(
            f"SIGMASIGHT_MARKET_DATA={name!r}: expected 'synthetic' (offline, the default), "
            "'polygon' (needs POLYGON_API_KEY), 'files' (reads SIGMASIGHT_MARKET_DATA_DIR) or "
            "'yfinance' (free daily bars from Yahoo, no key)"
        )


class MarketDataResource(ConfigurableResource):
    """The configured market data provider (default from SIGMASIGHT_MARKET_DATA)."""

    provider: str = Field(
        default_factory=provider_name,
        description="synthetic | polygon | files | yfinance (default from SIGMASIGHT_MARKET_DATA)",
    )
    polygon_base_url: str | None = Field(
        default=None, description="Polygon API base URL (tests point it at a local fake server)"
    )
    polygon_requests_per_minute: float | None = Field(
        default=None, description="Shared rate limit; default POLYGON_REQUESTS_PER_MINUTE or 5"
    )
    yahoo_requests_per_minute: float | None = Field(
        default=None, description="Shared rate limit; default YAHOO_REQUESTS_PER_MINUTE or 60"
    )
    market_data_dir: str | None = Field(
        default=None, description="The files provider's folder; default SIGMASIGHT_MARKET_DATA_DIR"
    )
    database_url: str | None = Field(
        default=None,
        description="Database of the shared rate limiter and provider caches; default "
        "DATABASE_URL or the embedded server",
    )

    def get_provider(self) -> MarketDataProvider:
        return _provider(
            self.provider,
            self.polygon_base_url,
            self.polygon_requests_per_minute,
            database_url=self.database_url,
            yahoo_rate=self.yahoo_requests_per_minute,
            data_dir=self.market_data_dir,
        )


@cache
def _provider(
    name: str,
    base_url: str | None = None,
    rate: float | None = None,
    *,
    database_url: str | None = None,
    yahoo_rate: float | None = None,
    data_dir: str | None = None,
) -> MarketDataProvider:
    """One provider per configuration and process, so in-process caches are shared. The rate
    limit is shared by every process through the database (`rate_limit.SharedRateLimiter`)."""
    _check_name(name)
    if name == "synthetic":
        from sigmasight_pipeline.resources.synthetic import SyntheticMarket

        return SyntheticMarket()
    if name == "files":
        from sigmasight_pipeline.resources.files import FilesMarketData

        return FilesMarketData.from_env(data_dir)
    # database_url None: DATABASE_URL or the embedded server, resolved at first use.
    if name == "polygon":
        from sigmasight_pipeline.resources.polygon import PolygonMarketData

        kwargs: dict = {"database_url": database_url}
        if base_url:
            kwargs["base_url"] = base_url
        if rate:
            kwargs["requests_per_minute"] = rate
        return PolygonMarketData.from_env(**kwargs)
    from sigmasight_pipeline.resources.yahoo import YahooMarketData

    kwargs = {"database_url": database_url}
    if yahoo_rate:
        kwargs["requests_per_minute"] = yahoo_rate
    return YahooMarketData.from_env(**kwargs)
