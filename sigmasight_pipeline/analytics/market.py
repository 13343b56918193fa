"""Securities, price completeness and returns: pure functions over DataFrames."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.instruments import classify_symbol
from sigmasight_pipeline.resources.market_data import BAR_COLUMNS, FACTOR_ETFS

SECURITY_COLUMNS = [
    "symbol", "security_type", "underlying", "option_right", "strike", "expiry", "sector",
    "industry", "is_factor_etf",
]  # fmt: skip
REALIZED_VOL_WINDOW = 30
TRADING_DAYS_PER_YEAR = 252


def securities_table(held_symbols: Iterable[str]) -> pd.DataFrame:
    """Held symbols, the underlyings of held options and the factor ETFs, one row each."""
    factor_etfs = set(FACTOR_ETFS.values())
    rows: dict[str, dict] = {}

    def add_stock(symbol: str) -> None:
        is_etf = symbol in factor_etfs
        rows.setdefault(
            symbol,
            {"symbol": symbol, "security_type": "ETF" if is_etf else "STOCK", "underlying": symbol,
             "is_factor_etf": is_etf},
        )  # fmt: skip

    for symbol in sorted(set(held_symbols)):
        contract = classify_symbol(symbol)
        if contract is None:
            add_stock(symbol)
        else:
            rows[symbol] = {
                "symbol": symbol, "security_type": "OPTION", "underlying": contract.underlying,
                "option_right": contract.right, "strike": contract.strike,
                "expiry": pd.Timestamp(contract.expiry), "is_factor_etf": False,
            }  # fmt: skip
            add_stock(contract.underlying)
    for etf in FACTOR_ETFS.values():
        add_stock(etf)
    table = pd.DataFrame(list(rows.values())).reindex(columns=SECURITY_COLUMNS)
    table["expiry"] = pd.to_datetime(table["expiry"])
    return table.sort_values("symbol").reset_index(drop=True)


def wanted_pairs(securities: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Every (symbol, trade_date) that should have a bar: stocks every day, options to expiry."""
    grid = securities[["symbol", "security_type", "expiry"]].merge(
        pd.DataFrame({"trade_date": days}), how="cross"
    )
    live = grid["expiry"].isna() | (grid["trade_date"] <= grid["expiry"])
    return grid.loc[live, ["symbol", "security_type", "trade_date"]].reset_index(drop=True)


def missing_pairs(wanted: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The wanted pairs that `stored` (symbol, trade_date) does not have."""
    if stored.empty:
        return wanted.reset_index(drop=True)
    merged = wanted.merge(
        stored[["symbol", "trade_date"]].drop_duplicates(), how="left", indicator=True
    )
    return merged.loc[merged["_merge"] == "left_only", wanted.columns].reset_index(drop=True)


def close_matrix(prices: pd.DataFrame, sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """Closes as sessions x symbols (NaN where a session has no bar)."""
    if prices.empty:
        return pd.DataFrame(index=pd.DatetimeIndex(sessions, name="trade_date"))
    wide = prices.pivot_table(index="trade_date", columns="symbol", values="close", aggfunc="last")
    return wide.reindex(pd.DatetimeIndex(sessions, name="trade_date"))


def daily_returns(
    prices: pd.DataFrame, days: pd.DatetimeIndex, sessions: pd.DatetimeIndex
) -> pd.DataFrame:
    """Simple return per symbol and day: close(D) / close(previous session) - 1.

    `sessions` is the previous session of days[0] followed by `days`. A missing close on either
    side gives no row: a gap is never a zero return.
    """
    closes = close_matrix(prices, sessions)
    prev = closes.shift(1)
    frame = pd.DataFrame(
        {
            "close": closes.stack(),
            "prev_close": prev.stack(),
        }
    ).dropna()
    frame = frame.reset_index()
    frame = frame[frame["trade_date"].isin(days) & (frame["prev_close"] > 0)]
    frame["daily_return"] = frame["close"] / frame["prev_close"] - 1.0
    return frame[["symbol", "trade_date", "close", "prev_close", "daily_return"]].reset_index(
        drop=True
    )


def lookup(matrix: pd.DataFrame, dates, symbols, missing=np.nan) -> np.ndarray:
    """matrix.loc[date, symbol] for each (date, symbol) pair, `missing` where either is absent
    (never a wrapped -1 index)."""
    rows = matrix.index.get_indexer(pd.DatetimeIndex(dates))
    cols = matrix.columns.get_indexer(pd.Index(symbols))
    found = (rows >= 0) & (cols >= 0)
    if matrix.empty:
        return np.full(len(rows), missing)
    values = matrix.to_numpy()[np.where(found, rows, 0), np.where(found, cols, 0)]
    return np.where(found, values, missing)


def realized_volatility(closes: pd.DataFrame, window: int = REALIZED_VOL_WINDOW) -> pd.DataFrame:
    """Annualized trailing volatility of daily simple returns over `window` sessions (rows),
    sample std (ddof=1) x sqrt(252); NaN until `window` returns are available."""
    rets = closes / closes.shift(1) - 1.0
    return rets.rolling(window, min_periods=window).std() * np.sqrt(TRADING_DAYS_PER_YEAR)


def describe_missing(missing: pd.DataFrame, limit: int = 20) -> str:
    """A short markdown list of missing (symbol, day) pairs for run metadata."""
    if missing.empty:
        return "none"
    counts = missing.groupby("symbol")["trade_date"].agg(["count", "min", "max"])
    lines = [
        f"- {sym}: {row['count']} days ({row['min']:%Y-%m-%d} .. {row['max']:%Y-%m-%d})"
        for sym, row in counts.head(limit).iterrows()
    ]
    if len(counts) > limit:
        lines.append(f"- ... and {len(counts) - limit} more symbols")
    return "\n".join(lines)


def empty_bars() -> pd.DataFrame:
    return pd.DataFrame(columns=BAR_COLUMNS)


def model_option_bars(
    options: pd.DataFrame, underlying_closes: pd.DataFrame, rate: float
) -> pd.DataFrame:
    """Black-Scholes closes for option (symbol, trade_date) pairs that have no market bar.

    options: symbol, trade_date, underlying, option_right, strike, expiry. underlying_closes:
    sessions x underlyings, with REALIZED_VOL_WINDOW sessions of history before the first day.
    Volatility is the underlying's trailing realized volatility; a pair whose underlying has
    no close or too little history gets no bar (it stays missing, never a zero).
    """
    from sigmasight_pipeline.analytics.greeks import bs_price

    if options.empty:
        return empty_bars()
    spot = lookup(underlying_closes, options["trade_date"], options["underlying"])
    vol = lookup(
        realized_volatility(underlying_closes), options["trade_date"], options["underlying"]
    )
    t_years = (pd.to_datetime(options["expiry"]) - options["trade_date"]).dt.days.to_numpy() / 365.0
    price = bs_price(
        spot, options["strike"].to_numpy(float), t_years, rate, vol,
        options["option_right"].eq("C").to_numpy(),
    )  # fmt: skip
    bars = pd.DataFrame(
        {"symbol": options["symbol"].to_numpy(), "trade_date": options["trade_date"].to_numpy(),
         "open": price, "high": price, "low": price, "close": price, "volume": 0.0,
         "source": "model"}
    )  # fmt: skip
    return bars[np.isfinite(bars["close"])].reset_index(drop=True)
