"""The market data interface every provider implements, and the factory that picks one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date
from functools import cache
from typing import Protocol, runtime_checkable

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

BAR_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source"]
SECURITY_INFO_COLUMNS = ["symbol", "sector", "industry"]
SHORT_INTEREST_COLUMNS = ["symbol", "trade_date", "short_interest_pct_float", "days_to_cover"]


class MarketDataError(RuntimeError):
    """A provider could not answer; the message names the symbol and day."""


@runtime_checkable
class MarketDataProvider(Protocol):
    """Daily market data for stocks, ETFs and `O:`-less OCC option symbols.

    Every method returns a DataFrame with exactly the documented columns; `trade_date` is a
    `datetime.date`. A (symbol, day) the provider has no data for is simply absent from the
    result: the caller decides whether that is an error or a flagged row.
    """

    name: str

    def daily_bars(self, wanted: pd.DataFrame) -> pd.DataFrame:
        """OHLCV bars (BAR_COLUMNS) for the (symbol, trade_date) pairs in `wanted`.

        `wanted` has columns `symbol` and `trade_date` (datetime.date) and holds exactly the
        pairs not yet stored, so a provider never fetches what the database already has.
        Option symbols are plain OCC (`AAPL250620C00150000`); a provider adds `O:` itself.
        `source` names where the bar came from (e.g. "synthetic", "polygon").
        """
        ...

    def security_info(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Sector and industry (SECURITY_INFO_COLUMNS) of stocks and ETFs; None if unknown."""
        ...

    def short_interest(self, symbols: Sequence[str], days: Sequence[date]) -> pd.DataFrame:
        """Short interest (SHORT_INTEREST_COLUMNS) as of each day: % of float, days to cover."""
        ...


def provider_name() -> str:
    name = os.environ.get("SIGMASIGHT_MARKET_DATA", "synthetic").strip().lower()
    if name not in ("synthetic", "polygon"):
        raise ValueError(
            f"SIGMASIGHT_MARKET_DATA={name!r}: expected 'synthetic' (offline, the default) or "
            "'polygon' (needs POLYGON_API_KEY)"
        )
    return name


class MarketDataResource(ConfigurableResource):
    """The configured market data provider: `synthetic` (default, offline) or `polygon`."""

    provider: str = Field(
        default_factory=provider_name,
        description="synthetic | polygon (default from SIGMASIGHT_MARKET_DATA)",
    )
    polygon_base_url: str | None = Field(
        default=None, description="Polygon API base URL (tests point it at a local fake server)"
    )
    polygon_requests_per_minute: float | None = Field(
        default=None, description="Token bucket rate; default POLYGON_REQUESTS_PER_MINUTE or 5"
    )

    def get_provider(self) -> MarketDataProvider:
        return _provider(self.provider, self.polygon_base_url, self.polygon_requests_per_minute)


@cache
def _provider(name: str, base_url: str | None, rate: float | None) -> MarketDataProvider:
    """One provider per configuration and process, so caches and rate limits are shared."""
    if name == "synthetic":
        from sigmasight_pipeline.resources.synthetic import SyntheticMarket

        return SyntheticMarket()
    if name == "polygon":
        from sigmasight_pipeline.resources.polygon import PolygonMarketData

        kwargs: dict = {}
        if base_url:
            kwargs["base_url"] = base_url
        if rate:
            kwargs["requests_per_minute"] = rate
        return PolygonMarketData.from_env(**kwargs)
    raise ValueError(f"unknown market data provider {name!r}: expected 'synthetic' or 'polygon'")
