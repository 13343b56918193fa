"""Portfolio risk metrics: beta, volatility, Sharpe/Sortino, drawdown, VaR and CVaR."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, asset

from sigmasight_pipeline.analytics import exposures, risk
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    lookback,
    partition_days,
)
from sigmasight_pipeline.settings import risk_free_rate

RISK_WINDOW = 60
DRAWDOWN_WINDOW = 90


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name="risk",
    kinds={"postgres", "pandas"},
    ins={
        "position_values": AssetIn(partition_mapping=lookback(DRAWDOWN_WINDOW)),
        "returns": AssetIn(partition_mapping=lookback(RISK_WINDOW - 1)),
    },
)
def portfolio_risk_metrics(
    context: AssetExecutionContext,
    position_values: pd.DataFrame,
    returns: pd.DataFrame,
    position_greeks: pd.DataFrame,
) -> pd.DataFrame:
    """From each portfolio's daily return series (daily P&L over the previous day's gross
    value): beta to SPY and annualized volatility (60 sessions), Sharpe and Sortino, maximum
    drawdown (90 sessions), historical 1-day 95% VaR/CVaR; parametric VaR/CVaR in dollars from
    the covariance of the underlyings' returns over 60 sessions and today's exposures."""
    days = partition_days(context)
    totals = (
        position_values.groupby(["trade_date", "portfolio_id"])
        .agg(total_value=("market_value", "sum"), daily_pnl=("daily_pnl", "sum"))
        .reset_index()
    )
    daily = risk.portfolio_daily_returns(totals)
    wide = daily.pivot(index="trade_date", columns="portfolio_id", values="daily_return")
    symbol_returns = returns.pivot_table(
        index="trade_date", columns="symbol", values="daily_return", aggfunc="last"
    )
    wide = wide.reindex(wide.index.union(symbol_returns.index)).sort_index()
    spy = symbol_returns["SPY"] if "SPY" in symbol_returns else pd.Series(dtype=float)
    values = totals.pivot(index="trade_date", columns="portfolio_id", values="total_value")
    metrics = risk.rolling_risk_metrics(
        wide, spy.reindex(wide.index), days, risk_free_rate(),
        beta_window=RISK_WINDOW, vol_window=RISK_WINDOW, drawdown_window=DRAWDOWN_WINDOW,
        var_window=RISK_WINDOW, total_values=values.reindex(wide.index),
    )  # fmt: skip
    today = position_values[position_values["trade_date"].isin(days)]
    exposure = exposures.risk_exposures(today, position_greeks)
    # Options put delta-adjusted exposure on their underlying: the covariance is of underlyings.
    on_underlyings = exposure.drop(columns="symbol").rename(columns={"underlying": "symbol"})
    parametric = risk.rolling_parametric_var(
        on_underlyings,
        symbol_returns,
        days,
        window=RISK_WINDOW,
    )
    merged = metrics.merge(
        parametric.drop(columns=["n_obs"]).rename(columns={"reason": "var_reason"}),
        on=["trade_date", "portfolio_id"],
        how="left",
    )
    both = merged["reason"].notna() & merged["var_reason"].notna()
    merged["reason"] = merged["reason"].fillna(merged["var_reason"])
    merged.loc[both, "reason"] += "; " + merged.loc[both, "var_reason"]
    # Only portfolios that hold positions on the day get a row.
    held = today[["trade_date", "portfolio_id"]].drop_duplicates()
    merged = merged.merge(held, on=["trade_date", "portfolio_id"])
    context.add_output_metadata({"rows": len(merged)})
    return merged[
        ["trade_date", "portfolio_id", "beta", "volatility_ann", "sharpe", "sortino",
         "max_drawdown", "var_95_1d", "cvar_95_1d", "var_95_1d_hist", "cvar_95_1d_hist",
         "var_95_1d_hist_usd", "cvar_95_1d_hist_usd", "n_obs", "reason"]
    ]  # fmt: skip
