"""The prices a load's changes are made at when the file does not give one: a session's close,
stored or fetched, and an expired option's intrinsic value at expiry. Nothing is guessed: a
price that cannot be found refuses the load, naming the symbol, the session and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import psycopg

from sigmasight_pipeline.csv_table import RowError
from sigmasight_pipeline.holdings.diff import LoadPlan
from sigmasight_pipeline.resources.market_data import FAILED, MarketDataProvider

__all__ = [
    "CLOSE_PRICE",
    "EXPIRY_PRICE",
    "Closes",
    "missing_prices",
    "price_events",
    "session_closes",
]

CLOSE_PRICE = "close:"  # + the close's source (prices.source, or the provider's bar source)
EXPIRY_PRICE = "expiry:"  # + "<underlying> close:<source>": intrinsic value at expiry

Key = tuple[str, date]


@dataclass(frozen=True)
class Closes:
    """Closes by (symbol, session): the close, where it came from, or why there is none."""

    close: dict[Key, float]
    source: dict[Key, str]
    missing: dict[Key, str]


def _key(symbol: object, day: object) -> Key:
    return str(symbol), pd.Timestamp(day).date()


def session_closes(
    conn: psycopg.Connection, wanted: pd.DataFrame, provider: MarketDataProvider | None = None
) -> Closes:
    """The close of each wanted (symbol, trade_date): stored in sigmasight.prices (a market close
    before a `model` one), else fetched through `provider` (default: the configured market data
    provider, asked only when something is missing), else missing with the reason. Fetched
    bars are not stored (the prices asset owns that table)."""
    close: dict[Key, float] = {}
    source: dict[Key, str] = {}
    if wanted.empty:
        return Closes(close, source, {})
    keys = [_key(s, d) for s, d in zip(wanted["symbol"], wanted["trade_date"], strict=True)]
    stored = conn.execute(
        "SELECT DISTINCT ON (p.symbol, p.trade_date) p.symbol, p.trade_date, p.close, p.source "
        "FROM sigmasight.prices p JOIN unnest(%s::text[], %s::date[]) AS w(symbol, trade_date) "
        "USING (symbol, trade_date) WHERE p.close > 0 AND p.close < 'Infinity' "
        "ORDER BY p.symbol, p.trade_date, (p.source = 'model')",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    for symbol, day, value, origin in stored:
        close[(symbol, day)], source[(symbol, day)] = float(value), f"{CLOSE_PRICE}{origin}"
    lacking = [k for k in keys if k not in close]
    if not lacking:
        return Closes(close, source, {})
    if provider is None:
        from sigmasight_pipeline.resources.market_data import MarketDataResource

        provider = MarketDataResource().get_provider()
    result = provider.fetch_bars(
        pd.DataFrame({"symbol": [k[0] for k in lacking], "trade_date": [k[1] for k in lacking]})
    )
    bars = result.bars
    for symbol, day, value, origin in zip(
        bars["symbol"], bars["trade_date"], bars["close"], bars["source"], strict=True
    ):
        if np.isfinite(float(value)) and float(value) > 0:
            close[_key(symbol, day)] = float(value)
            source[_key(symbol, day)] = f"{CLOSE_PRICE}{origin}"
    issues = result.issues
    details = {
        _key(symbol, day): f"{'failed' if kind == FAILED else 'rejected'}: {detail}"
        for symbol, day, kind, detail in zip(
            issues["symbol"], issues["trade_date"], issues["kind"], issues["detail"], strict=True
        )
    }
    missing = {
        key: (
            f"no close for {key[0]} on {key[1]}: none in sigmasight.prices, and the "
            f"{provider.name} market data provider gave none "
            f"({details.get(key) or result.fatal or 'it has no bar for that session'})"
        )
        for key in lacking
        if key not in close
    }
    return Closes(close, source, missing)


def _rows_needing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["price"].isna()]


def missing_prices(plan: LoadPlan, closes: Closes) -> list[RowError]:
    """One error per file row (or held position) a missing close leaves without a price."""
    errors = []
    for frame in (plan.changes, plan.opening):
        for row in _rows_needing(frame).itertuples(index=False):
            key = _key(row.price_symbol, row.price_date)
            if key not in closes.missing:
                continue
            line = None if pd.isna(row.line) else int(row.line)
            what = "" if row.price_symbol == row.symbol else f" (to settle {row.symbol} at expiry)"
            reason = f"{closes.missing[key]}{what}; nothing was loaded (store that session's "
            reason += "prices, e.g. `sigmasight backfill`, and load the file again)"
            errors.append(RowError(line, "ticker", str(row.symbol), reason))
    return sorted(errors, key=lambda e: (e.row or 0, e.value or ""))


def price_events(frame: pd.DataFrame, closes: Closes) -> pd.DataFrame:
    """`frame` (a plan's changes or opening) with its NaN prices filled: the close of
    (price_symbol, price_date), or for an expired option (settle_right set) its intrinsic
    value at expiry, max(0, underlying - strike) for a call, max(0, strike - underlying) for a
    put. price_source says which."""
    out = frame.copy()
    pending = out["price"].isna()
    if not pending.any():
        return out
    keys = [
        _key(s, d)
        for s, d in zip(
            out.loc[pending, "price_symbol"], out.loc[pending, "price_date"], strict=True
        )
    ]
    value = np.array([closes.close[k] for k in keys])
    origin = np.array([closes.source[k] for k in keys], dtype=object)
    right = out.loc[pending, "settle_right"].to_numpy(dtype=object)
    strike = out.loc[pending, "settle_strike"].to_numpy(dtype=float)
    settled = pd.notna(right)
    intrinsic = np.where(right == "C", value - strike, strike - value).clip(min=0.0)
    underlying = out.loc[pending, "price_symbol"].to_numpy(dtype=object)
    out.loc[pending, "price"] = np.where(settled, intrinsic, value)
    out.loc[pending, "price_source"] = np.where(
        settled, EXPIRY_PRICE + underlying + " " + origin, origin
    )
    return out
