"""Securities, price completeness and returns: pure functions over DataFrames."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.instruments import classify_symbol, is_option_symbol
from sigmasight_pipeline.analytics.validation import (
    is_price,
    naive_dates,
    require_finite,
    require_returns,
    require_unique_pairs,
    session_index,
    sorted_unique_rows,
    unique_pivot,
)
from sigmasight_pipeline.resources.market_data import BAR_COLUMNS, MARKET_ETFS

SECURITY_COLUMNS = [
    "symbol", "security_type", "underlying", "option_right", "strike", "expiry", "sector",
    "industry", "is_factor_etf",
]  # fmt: skip
REALIZED_VOL_WINDOW = 30
# The lowest close a model-priced option may have: half a cent. Below it a Black-Scholes price
# is numerically zero at quote precision (0.0, 1e-300): such a bar is dropped and the option
# stays unpriced, since a near-zero close would make the next day's return meaningless.
MIN_MODEL_OPTION_PRICE = 0.005
TRADING_DAYS_PER_YEAR = 252


def securities_table(held_symbols: Iterable[str]) -> pd.DataFrame:
    """Held symbols, the underlyings of held options and the factor and rates ETFs, one row
    each."""
    factor_etfs = set(MARKET_ETFS)
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
    for etf in MARKET_ETFS:
        add_stock(etf)
    table = pd.DataFrame(list(rows.values())).reindex(columns=SECURITY_COLUMNS)
    table["expiry"] = pd.to_datetime(table["expiry"], cache=False)
    return table.sort_values("symbol").reset_index(drop=True)


def wanted_pairs(securities: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Every (symbol, trade_date) that should have a bar: stocks every day, options to expiry
    and, when `securities` has a `first_held` column (the earliest entry date of the positions
    in the contract), not before it: no portfolio values a contract before it holds it, and a
    contract's lookback history would be most of the market data of an options book."""
    columns = ["symbol", "security_type", "expiry"]
    has_first = "first_held" in securities.columns
    grid = securities[[*columns, "first_held"] if has_first else columns].merge(
        pd.DataFrame({"trade_date": days}), how="cross"
    )
    live = grid["expiry"].isna() | (grid["trade_date"] <= grid["expiry"])
    if has_first:
        held = grid["first_held"].isna() | (grid["trade_date"] >= grid["first_held"])
        live &= held | grid["security_type"].ne("OPTION")
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
    """Closes as sessions x symbols, NaN where a session has no price.

    Only a finite close > 0 is a price: a zero, negative or infinite close is left out (NaN),
    as if the bar were missing. A (symbol, trade_date) that appears twice raises a ValueError
    naming the pairs (input order never decides the price). `sessions` is sorted; duplicate
    or tz-aware sessions raise.
    """
    axis = session_index(sessions)
    if prices.empty:
        return pd.DataFrame(index=axis)
    frame = pd.DataFrame(
        {
            "symbol": prices["symbol"].to_numpy(),
            "trade_date": naive_dates(prices["trade_date"], "prices.trade_date"),
            "close": prices["close"].to_numpy(dtype=float),
        }
    )
    require_unique_pairs(frame, ["symbol", "trade_date"], "prices")
    symbols = pd.Index(sorted(frame["symbol"].unique()), name="symbol")
    valid = frame[is_price(frame["close"])]
    wide = valid.pivot(index="trade_date", columns="symbol", values="close")
    return wide.reindex(index=axis, columns=symbols)


def daily_returns(
    prices: pd.DataFrame, days: pd.DatetimeIndex, sessions: pd.DatetimeIndex
) -> pd.DataFrame:
    """Simple return per symbol and day: close(D) / close(previous session) - 1.

    `sessions` is the previous session of days[0] followed by `days`. A missing close on either
    side gives no row: a gap is never a zero return. A close that is not a price (<= 0 or not
    finite, see `close_matrix`) counts as missing, so neither the day it appears (no -100 %)
    nor the day after (no +inf rebound) has a return. Duplicate (symbol, trade_date) rows raise.
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
    frame = frame[frame["trade_date"].isin(naive_dates(days, "days"))].copy()
    frame["daily_return"] = frame["close"] / frame["prev_close"] - 1.0
    return frame[["symbol", "trade_date", "close", "prev_close", "daily_return"]].reset_index(
        drop=True
    )


def returns_matrix(returns: pd.DataFrame) -> pd.DataFrame:
    """Daily returns (symbol, trade_date, daily_return rows) as dates x symbols, dates sorted.

    Duplicate (symbol, trade_date) rows, tz-aware dates, +-inf returns and returns below -100 %
    raise a ValueError naming them. Missing returns are NaN.
    """
    frame = pd.DataFrame(
        {
            "symbol": returns["symbol"].to_numpy(),
            "trade_date": naive_dates(returns["trade_date"], "returns.trade_date"),
            "daily_return": returns["daily_return"].to_numpy(dtype=float),
        }
    )
    wide = unique_pivot(frame, "trade_date", "symbol", "daily_return", "returns").sort_index()
    require_returns(wide, "returns")
    return wide.rename_axis(index="trade_date", columns="symbol")


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


def realized_volatility(
    closes: pd.DataFrame, window: int = REALIZED_VOL_WINDOW, min_obs: int | None = None
) -> pd.DataFrame:
    """Annualized trailing volatility of daily simple returns over `window` sessions (rows),
    sample std (ddof=1) x sqrt(252), from the returns present in the window: NaN while fewer
    than `min_obs` (default two thirds of the window) are present, so one missing close does
    not blind the next `window` sessions.

    `closes` is sessions x symbols; rows are sorted by date first (duplicate or tz-aware dates
    raise), and a close that is not a price (<= 0 or not finite) counts as missing.
    """
    closes = sorted_unique_rows(closes, "closes").astype(float)
    closes = closes.where(is_price(closes))
    rets = closes / closes.shift(1) - 1.0
    needed = min_obs if min_obs is not None else max(2, -(-2 * window // 3))
    return rets.rolling(window, min_periods=needed).std() * np.sqrt(TRADING_DAYS_PER_YEAR)


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
    """No bars, typed like bars (dates as datetime64, prices as floats)."""
    frame = pd.DataFrame(columns=BAR_COLUMNS)
    return frame.astype(
        {"trade_date": "datetime64[ns]", **{c: float for c in ("open", "high", "low", "close")}}
    )


def stack(frames: Iterable[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The non-empty frames' `columns` one under the other; when all are empty, the first
    frame's columns with their dtypes (so an empty result still merges on dates)."""
    frames = [f[list(columns)] for f in frames]
    parts = [f for f in frames if len(f)]
    if parts:
        return pd.concat(parts, ignore_index=True)
    return frames[0].iloc[:0] if frames else pd.DataFrame(columns=list(columns))


def model_option_bars(
    options: pd.DataFrame, underlying_closes: pd.DataFrame, rate: float
) -> pd.DataFrame:
    """Black-Scholes closes for option (symbol, trade_date) pairs that have no market bar.

    options: symbol, trade_date, underlying, option_right, strike, expiry. underlying_closes:
    sessions x underlyings, with REALIZED_VOL_WINDOW sessions of history before the first day.
    Volatility is the underlying's trailing realized volatility; a pair whose underlying has
    no close or too little history, or whose model price is below MIN_MODEL_OPTION_PRICE
    (half a cent: 0.0 and 1e-300 included), gets no bar: it stays missing, never a zero.
    """
    from sigmasight_pipeline.analytics.greeks import bs_price

    if options.empty:
        return empty_bars()
    spot = lookup(underlying_closes, options["trade_date"], options["underlying"])
    vol = lookup(
        realized_volatility(underlying_closes), options["trade_date"], options["underlying"]
    )
    t_years = (
        pd.to_datetime(options["expiry"], cache=False) - options["trade_date"]
    ).dt.days.to_numpy() / 365.0
    price = bs_price(
        spot, options["strike"].to_numpy(float), t_years, rate, vol,
        options["option_right"].eq("C").to_numpy(),
    )  # fmt: skip
    bars = pd.DataFrame(
        {"symbol": options["symbol"].to_numpy(), "trade_date": options["trade_date"].to_numpy(),
         "open": price, "high": price, "low": price, "close": price, "volume": 0.0,
         "source": "model"}
    )  # fmt: skip
    keep = np.isfinite(price) & (price >= MIN_MODEL_OPTION_PRICE)
    return bars[keep].reset_index(drop=True)


# A daily move beyond 40 % either way is flagged unless a split explains it. Such moves are rare
# for listed stocks and ETFs outside corporate actions (binary biotech news, bankruptcies), while
# every split of 2:1 or more (-50 % and beyond unadjusted) and every reverse split (+100 % and
# beyond) exceeds it. Smaller splits (3:2 = -33 %, 5:4 = -20 %) fall below it: they are reported
# only when a split record explains the move. Options are not checked (their daily moves
# routinely exceed 40 %).
JUMP_THRESHOLD = 0.40
# A move is explained by a split when log(1 + r) is within this of log(split_from / split_to):
# about +-10 % of market move on the split day on top of the ratio (and never more than half
# the split's own log size, so a split-adjusted series with a ~0 % day is not "explained").
SPLIT_TOLERANCE = 0.10
SPLIT_MATCH_DAYS = 7  # a split's execution date may fall on a non-session; match within a week
JUMP_COLUMNS = ["symbol", "trade_date", "daily_return", "reason"]
SPLIT_REASON = "split"


def _percent(value: float) -> str:
    return f"{value * 100:+.1f} %"


def flag_price_jumps(
    returns: pd.DataFrame,
    splits: pd.DataFrame | None = None,
    threshold: float = JUMP_THRESHOLD,
    tolerance: float = SPLIT_TOLERANCE,
) -> pd.DataFrame:
    """Daily moves beyond `threshold` that no known split explains, and moves splits explain.

    returns: symbol, trade_date, daily_return (e.g. `daily_returns`); option symbols are skipped.
    splits: symbol, execution_date, split_from, split_to (Polygon's convention: a 7-for-1 split
    is from 1 to 7, so an unadjusted close falls to split_from / split_to of the previous one).
    A split is matched to the symbol's first return on or after its execution date (within
    SPLIT_MATCH_DAYS calendar days).

    Returns JUMP_COLUMNS, one row per reported move, sorted by symbol and date, with `reason`:
    - "split" when a split on record explains the move (|log(1 + r) - log(from / to)| within
      `tolerance`, and within half of |log(from / to)|), whatever its size: the series is not
      split-adjusted and the caller can say so;
    - "jump of -85.7 % with no split on record" when |r| > threshold and no split matches;
    - "jump of ... not explained by the 2:1 split on <date> (expected -50.0 %)" when a split
      matches the day but not the size.
    """
    if threshold <= 0 or tolerance <= 0:
        raise ValueError(f"threshold ({threshold}) and tolerance ({tolerance}) must be > 0")
    frame = pd.DataFrame(
        {
            "symbol": returns["symbol"].to_numpy(),
            "trade_date": naive_dates(returns["trade_date"], "returns.trade_date"),
            "daily_return": returns["daily_return"].to_numpy(dtype=float),
        }
    )
    require_unique_pairs(frame, ["symbol", "trade_date"], "returns")
    require_finite(frame["daily_return"], "returns.daily_return")
    stocks = pd.Series(frame["symbol"].unique())
    options = set(stocks[stocks.map(is_option_symbol)])
    frame = frame[frame["daily_return"].notna() & ~frame["symbol"].isin(options)]
    frame = frame.sort_values(["trade_date", "symbol"]).reset_index(drop=True)
    ratio = pd.Series(np.nan, index=frame.index)
    split_label = pd.Series(None, index=frame.index, dtype=object)
    if splits is not None and not splits.empty and not frame.empty:
        events = pd.DataFrame(
            {
                "symbol": splits["symbol"].to_numpy(),
                "execution_date": naive_dates(
                    splits["execution_date"], "splits.execution_date"
                ).astype("datetime64[ns]"),
                "split_from": splits["split_from"].to_numpy(dtype=float),
                "split_to": splits["split_to"].to_numpy(dtype=float),
            }
        )
        bad = ~(is_price(events["split_from"]) & is_price(events["split_to"]))
        if bad.any():
            rows = events[bad].head(5)
            raise ValueError(
                "splits need finite split_from and split_to > 0; bad rows: "
                + ", ".join(f"({r.symbol}, {r.execution_date:%Y-%m-%d})" for r in rows.itertuples())
            )
        matched = pd.merge_asof(
            events.sort_values("execution_date"),
            frame[["symbol", "trade_date"]].assign(
                trade_date=frame["trade_date"].astype("datetime64[ns]"), row=frame.index
            ),
            left_on="execution_date",
            right_on="trade_date",
            by="symbol",
            direction="forward",
            tolerance=pd.Timedelta(days=SPLIT_MATCH_DAYS),
        ).dropna(subset=["row"])
        matched = matched.drop_duplicates("row")
        rows = matched["row"].astype(int).to_numpy()
        ratio.iloc[rows] = (matched["split_from"] / matched["split_to"]).to_numpy()
        split_label.iloc[rows] = [
            f"{to:g}:{fr:g} split on {day:%Y-%m-%d}"
            for fr, to, day in zip(
                matched["split_from"], matched["split_to"], matched["execution_date"], strict=True
            )
        ]
    log_move = np.log1p(frame["daily_return"])
    log_ratio = np.log(ratio)
    explained = (log_move - log_ratio).abs() <= np.minimum(tolerance, log_ratio.abs() / 2)
    beyond = frame["daily_return"].abs() > threshold
    report = explained | beyond
    reason = pd.Series(SPLIT_REASON, index=frame.index, dtype=object)
    unexplained = beyond & ~explained
    for i in np.flatnonzero(unexplained):
        jump = f"jump of {_percent(frame['daily_return'].iat[i])}"
        if pd.isna(split_label.iat[i]):
            reason.iat[i] = f"{jump} with no split on record"
        else:
            reason.iat[i] = (
                f"{jump} not explained by the {split_label.iat[i]} "
                f"(expected {_percent(ratio.iat[i] - 1.0)})"
            )
    out = frame.assign(reason=reason)[report]
    return out.sort_values(["symbol", "trade_date"])[JUMP_COLUMNS].reset_index(drop=True)
