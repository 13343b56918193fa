"""Short interest, factor betas and position/portfolio factor exposures."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, asset

from sigmasight_pipeline.analytics import exposures, factors
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    lookback,
    partition_days,
)
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS, MarketDataResource

FACTOR_GROUP = "factors"
BETA_WINDOW = 60
MIN_OBS = 20


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name="market_data",
    kinds={"postgres", "pandas"},
    pool="market_data_api",
)
def short_interest(
    context: AssetExecutionContext, securities: pd.DataFrame, market_data: MarketDataResource
) -> pd.DataFrame:
    """Short interest of every stock as of each day (% of float, days to cover), from the
    market data provider; ETFs and options have none."""
    days = partition_days(context)
    stocks = securities.loc[securities["security_type"].eq("STOCK"), "symbol"].tolist()
    provider = market_data.get_provider()
    frame = provider.short_interest(stocks, [d.date() for d in days])
    frame = frame.assign(trade_date=pd.to_datetime(frame["trade_date"]), source=provider.name)
    context.add_output_metadata(
        {"symbols": len(stocks), "with_data": int(frame["symbol"].nunique()) if len(frame) else 0}
    )
    return frame.drop_duplicates(["symbol", "trade_date"]).reset_index(drop=True)


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=FACTOR_GROUP,
    kinds={"postgres", "pandas"},
    ins={"returns": AssetIn(partition_mapping=lookback(BETA_WINDOW - 1))},
)
def factor_betas(
    context: AssetExecutionContext, returns: pd.DataFrame, securities: pd.DataFrame
) -> pd.DataFrame:
    """Betas of every stock and ETF to the seven factor ETFs over the trailing 60 sessions
    (market: Cov/Var on SPY; styles: OLS on ETF-minus-SPY spreads; one solve per window for
    all symbols). Fewer than 20 observations: null beta with the reason."""
    days = partition_days(context)
    wide = returns.pivot_table(
        index="trade_date", columns="symbol", values="daily_return", aggfunc="last"
    )
    etfs = list(FACTOR_ETFS.values())
    symbols = securities.loc[securities["security_type"].ne("OPTION"), "symbol"]
    asset_returns = wide.reindex(columns=sorted(symbols))
    factor_returns = wide.reindex(columns=etfs)
    betas = factors.rolling_factor_betas(
        asset_returns, factor_returns, days, window=BETA_WINDOW, min_obs=MIN_OBS
    )
    betas["trade_date"] = pd.to_datetime(betas["trade_date"])
    nulls = int(betas["beta"].isna().sum())
    context.add_output_metadata({"symbols": len(symbols), "null_betas": nulls})
    return betas


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=FACTOR_GROUP,
    kinds={"postgres", "pandas"},
)
def position_factor_exposures(
    factor_betas: pd.DataFrame,
    position_values: pd.DataFrame,
    position_greeks: pd.DataFrame,
    short_interest: pd.DataFrame,
) -> pd.DataFrame:
    """Each position's beta to the eight factors (options carry their underlying's betas,
    applied to delta-adjusted exposure) and its dollar exposure to each."""
    risk = exposures.risk_exposures(position_values, position_greeks)
    return exposures.position_factor_exposures(risk, factor_betas, short_interest)


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=FACTOR_GROUP,
    kinds={"postgres", "pandas"},
)
def portfolio_factor_exposures(
    position_factor_exposures: pd.DataFrame, position_values: pd.DataFrame
) -> pd.DataFrame:
    """Portfolio beta per factor = sum of (exposure / portfolio gross value) x beta, with the
    dollar exposure and the share of exposure that has a beta."""
    equity = (
        position_values.groupby(["trade_date", "portfolio_id"])["market_value"]
        .sum()
        .rename("total_value")
        .reset_index()
    )
    return exposures.portfolio_factor_exposures(position_factor_exposures, equity)
