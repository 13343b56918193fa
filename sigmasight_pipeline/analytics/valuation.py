"""Position values, P&L and portfolio aggregation, vectorized over positions x days."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.holdings import (
    daily_holdings,
    mark_to_market_pnl,
    opening_events,
)
from sigmasight_pipeline.analytics.market import close_matrix, lookup
from sigmasight_pipeline.analytics.validation import is_price, naive_dates, unique_pivot

MAX_CARRY_FORWARD_SESSIONS = 5
FIRST_PRICED_SESSION = "first priced session: no previous price"
POSITION_VALUE_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "symbol", "position_type", "quantity",
    "multiplier", "entry_date", "entry_price", "price", "price_date", "prev_price",
    "price_source", "market_value", "exposure", "cost_basis", "unrealized_pnl", "daily_pnl",
    "pnl_reason", "realized_pnl_usd", "realized_pnl_cum_usd",
]  # fmt: skip
POSITION_COUNT_COLUMNS = {
    "LONG": "long_count",
    "SHORT": "short_count",
    "LC": "lc_count",
    "LP": "lp_count",
    "SC": "sc_count",
    "SP": "sp_count",
}


def position_values(
    positions: pd.DataFrame,
    prices: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    days: pd.DatetimeIndex,
    holdings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Value every position on every day of `days` it is held, with that day's holdings.

    positions: id, portfolio_id, symbol, position_type, quantity, multiplier, entry_price,
    entry_date, expiry. prices: symbol, trade_date, close, covering `sessions`, which must include
    the session before days[0] (for daily P&L) and up to MAX_CARRY_FORWARD_SESSIONS before that.
    holdings: `analytics.holdings.daily_holdings` of the positions over `days` (quantity at the
    start and end of each day, average cost, the day's trade value and realized P&L); None:
    each position held from its entry date at its quantity and entry price (its open event).
    An option is not valued after its expiry.

    market value = |q| x price x multiplier; exposure = q x price x multiplier; cost basis =
    q x average cost x multiplier; unrealized P&L = exposure - cost basis (q: the quantity at
    the day's close); daily P&L = mark to market (`holdings.mark_to_market_pnl`): q x price x
    mult - q_start x previous price x mult - the day's trade value, so an entry day's P&L runs
    from the entry price and a close day's (q 0) from the previous close to the sale price;
    realized_pnl_usd / realized_pnl_cum_usd: the day's and the position's to date.

    Only a finite close > 0 is a price (`market.close_matrix`): a zero or negative close counts
    as missing. A missing close is carried forward up to MAX_CARRY_FORWARD_SESSIONS sessions and
    flagged (`carried_forward`); beyond that the row is `missing` with NULL values, never a
    zero. A priced row held since before the day but with no previous price (the first priced
    session of a position entered earlier, e.g. an option with no bar before) has no P&L on
    what it held (start valued at today's price) and a NULL `prev_price`. `pnl_reason` says
    why whenever a row is not a plain market-priced day (first priced session, carried
    forward, rejected close, missing); it is None otherwise.
    Duplicate (symbol, trade_date) prices raise a ValueError.
    """
    columns = POSITION_VALUE_COLUMNS
    if positions.empty or len(days) == 0:
        return pd.DataFrame(columns=columns)
    day_index = naive_dates(days, "days").sort_values()
    if holdings is None:
        holdings = daily_holdings(positions, opening_events(positions), day_index)

    closes = close_matrix(prices, sessions)
    closes = closes.reindex(columns=positions["symbol"].unique())
    observed = closes.notna()
    rejected = _rejected_closes(prices, closes)
    filled = closes.ffill(limit=MAX_CARRY_FORWARD_SESSIONS)
    price_dates = pd.DataFrame(
        np.where(observed, closes.index.values[:, None], np.datetime64("NaT")),
        index=closes.index,
        columns=closes.columns,
    ).ffill(limit=MAX_CARRY_FORWARD_SESSIONS)
    prev_filled = filled.shift(1)

    # The held position-days, with the positions' attributes; options not after expiry.
    attributes = positions[
        ["id", "portfolio_id", "symbol", "position_type", "multiplier", "entry_date",
         "entry_price", "expiry"]
    ].rename(columns={"id": "position_id"})  # fmt: skip
    grid = holdings.drop(columns=["portfolio_id"], errors="ignore").assign(
        trade_date=naive_dates(holdings["trade_date"], "holdings.trade_date")
    )
    grid = grid[grid["trade_date"].isin(day_index)].merge(attributes, on="position_id")
    expiry = pd.to_datetime(grid["expiry"], cache=False)
    grid = grid[expiry.isna() | (grid["trade_date"] <= expiry)].reset_index(drop=True)
    if grid.empty:
        return pd.DataFrame(columns=columns)

    dates, symbols = grid["trade_date"], grid["symbol"]
    price = lookup(filled, dates, symbols)
    prev_price = lookup(prev_filled, dates, symbols)
    price_date = pd.to_datetime(
        lookup(price_dates, dates, symbols, missing=np.datetime64("NaT")), cache=False
    )
    is_observed = lookup(observed, dates, symbols, missing=False).astype(bool)
    is_rejected = lookup(rejected, dates, symbols, missing=False).astype(bool)

    qty = grid["quantity"].to_numpy(float)
    qty_start = grid["quantity_start"].to_numpy(float)
    mult = grid["multiplier"].to_numpy(float)
    entry_price = grid["entry_price"].to_numpy(float)
    is_missing = np.isnan(price)
    first_priced = ~is_missing & np.isnan(prev_price) & (qty_start != 0)
    daily_pnl = mark_to_market_pnl(
        qty_start, qty, np.where(first_priced, price, prev_price), price,
        grid["trade_value_usd"].to_numpy(float), mult,
    )  # fmt: skip
    # Opened today: the P&L runs from the entry price (the previous price shown).
    opened_today = qty_start == 0
    prev_price = np.where(opened_today, entry_price, prev_price)
    rejected_text = "close <= 0 is not a price"
    reason = np.full(len(grid), None, dtype=object)
    # Only the rows without today's close get a reason built from their price date.
    carried = ~is_observed & ~is_missing
    since = price_date[carried].strftime("%Y-%m-%d").fillna("").to_numpy(dtype=object)
    carried_from = np.where(is_rejected[carried], f"{rejected_text}: ", "no close: ")
    reason[carried] = carried_from.astype(object) + "price carried forward from " + since
    reason[first_priced] = FIRST_PRICED_SESSION
    reason[is_missing] = (
        f"no price: no close on this session or the {MAX_CARRY_FORWARD_SESSIONS} before"
    )
    reason[is_missing & is_rejected] = (
        f"no price: {rejected_text} and no close in the {MAX_CARRY_FORWARD_SESSIONS} sessions "
        "before"
    )

    out = pd.DataFrame(
        {
            "trade_date": grid["trade_date"],
            "position_id": grid["position_id"].astype(int),
            "portfolio_id": grid["portfolio_id"].astype(int),
            "symbol": grid["symbol"],
            "position_type": grid["position_type"],
            "quantity": qty,
            "multiplier": mult.astype(int),
            "entry_date": pd.to_datetime(grid["entry_date"], cache=False),
            "entry_price": entry_price,
            "price": price,
            "price_date": price_date,
            "prev_price": prev_price,
            "price_source": np.where(
                is_observed, "market", np.where(is_missing, "missing", "carried_forward")
            ),
        }
    )
    out["market_value"] = np.abs(qty) * price * mult
    out["exposure"] = qty * price * mult
    out["cost_basis"] = grid["cost_basis_usd"].to_numpy(float)
    out["unrealized_pnl"] = out["exposure"] - out["cost_basis"]
    out["daily_pnl"] = daily_pnl
    out["pnl_reason"] = reason
    out["realized_pnl_usd"] = grid["realized_pnl_usd"].to_numpy(float)
    out["realized_pnl_cum_usd"] = grid["realized_pnl_cum_usd"].to_numpy(float)
    return out[columns].sort_values(["trade_date", "position_id"]).reset_index(drop=True)


def _rejected_closes(prices: pd.DataFrame, closes: pd.DataFrame) -> pd.DataFrame:
    """Sessions x symbols (as `closes`): True where a bar exists but its close is not a price."""
    rejected = pd.DataFrame(False, index=closes.index, columns=closes.columns)
    if prices.empty:
        return rejected
    bad = prices[~is_price(prices["close"])]
    if bad.empty:
        return rejected
    rows = closes.index.get_indexer(naive_dates(bad["trade_date"], "prices.trade_date"))
    cols = closes.columns.get_indexer(pd.Index(bad["symbol"]))
    found = (rows >= 0) & (cols >= 0)
    values = rejected.to_numpy(copy=True)
    values[rows[found], cols[found]] = True
    return pd.DataFrame(values, index=closes.index, columns=closes.columns)


def portfolio_snapshots(
    values: pd.DataFrame, sessions: pd.DatetimeIndex, days: pd.DatetimeIndex, window: int = 90
) -> pd.DataFrame:
    """Per portfolio and day of `days`: total value, long/short/gross/net exposure, counts, P&L.

    `sessions` runs from `window - 1` sessions before days[0] to days[-1], and `values` holds the
    position values of those sessions, so window_pnl (P&L over the trailing `window` sessions
    ending at the day) and window_start are complete.
    Unpriced positions count in `unpriced_count` and add nothing to the sums.
    """
    if values.empty:
        return pd.DataFrame()
    v = values.copy()
    exposure = v["exposure"]
    v["long_exposure"] = exposure.where(exposure > 0, 0.0)
    v["short_exposure"] = exposure.where(exposure < 0, 0.0)
    v["unpriced"] = v["price_source"].eq("missing").astype(int)
    for ptype, column in POSITION_COUNT_COLUMNS.items():
        v[column] = v["position_type"].eq(ptype).astype(int)
    grouped = v.groupby(["portfolio_id", "trade_date"], sort=True)
    snap = grouped.agg(
        total_value=("market_value", "sum"),
        long_exposure=("long_exposure", "sum"),
        short_exposure=("short_exposure", "sum"),
        net_exposure=("exposure", "sum"),
        daily_pnl=("daily_pnl", "sum"),
        unrealized_pnl=("unrealized_pnl", "sum"),
        position_count=("position_id", "count"),
        unpriced_count=("unpriced", "sum"),
        **{c: (c, "sum") for c in POSITION_COUNT_COLUMNS.values()},
    ).reset_index()
    snap["gross_exposure"] = snap["long_exposure"] - snap["short_exposure"]

    # Trailing-window P&L over sessions (rows), per portfolio, on the full session axis.
    all_days = pd.DatetimeIndex(sessions, name="trade_date")
    pnl = snap.pivot(index="trade_date", columns="portfolio_id", values="daily_pnl")
    pnl = pnl.reindex(all_days).fillna(0.0)
    window_pnl = pnl.rolling(window, min_periods=1).sum()
    window_start = pd.Series(all_days, index=all_days).shift(window - 1).fillna(all_days[0])
    stacked = window_pnl.stack().rename("window_pnl").reset_index()
    snap = snap.merge(stacked, on=["trade_date", "portfolio_id"], how="left")
    snap["window_start"] = snap["trade_date"].map(window_start)
    snap = snap[snap["trade_date"].isin(pd.DatetimeIndex(days))]
    ordered = [
        "trade_date", "portfolio_id", "total_value", "long_exposure", "short_exposure",
        "gross_exposure", "net_exposure", "daily_pnl", "window_pnl", "window_start",
        "unrealized_pnl", "position_count", *POSITION_COUNT_COLUMNS.values(), "unpriced_count",
    ]  # fmt: skip
    return snap[ordered].reset_index(drop=True)


SNAPSHOT_FACTOR_COLUMNS = {
    "Market": "beta_market",
    "Momentum": "beta_momentum",
    "Value": "beta_value",
    "Growth": "beta_growth",
    "Quality": "beta_quality",
    "Size": "beta_size",
    "Low Volatility": "beta_low_volatility",
    "Short Interest": "short_interest_exposure",
}
SNAPSHOT_GREEK_COLUMNS = ["delta", "gamma", "theta", "vega", "dollar_delta",
                          "delta_adjusted_exposure"]  # fmt: skip
SNAPSHOT_RISK_COLUMNS = ["volatility_ann", "sharpe", "max_drawdown", "var_95_1d", "cvar_95_1d"]


def enrich_snapshots(
    snapshots: pd.DataFrame,
    portfolio_greeks: pd.DataFrame,
    factor_exposures: pd.DataFrame,
    risk_metrics: pd.DataFrame,
) -> pd.DataFrame:
    """Add the portfolio-view Greeks, the factor betas and the risk metrics to snapshots."""
    keys = ["trade_date", "portfolio_id"]
    if snapshots.empty:
        return snapshots
    greeks = portfolio_greeks[portfolio_greeks["view"] == "portfolio"][
        keys + SNAPSHOT_GREEK_COLUMNS
    ]
    betas = (
        unique_pivot(factor_exposures, keys, "factor", "beta", "factor_exposures")
        .rename(columns=SNAPSHOT_FACTOR_COLUMNS)
        .reindex(columns=list(SNAPSHOT_FACTOR_COLUMNS.values()))
        .reset_index()
    )
    metrics = risk_metrics[keys + SNAPSHOT_RISK_COLUMNS]
    out = snapshots
    for part in (greeks, betas, metrics):
        part = part.assign(trade_date=pd.to_datetime(part["trade_date"], cache=False))
        out = out.merge(part, on=keys, how="left")
    return out
