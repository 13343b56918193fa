"""Option Greeks per position and their portfolio aggregates."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, asset

from sigmasight_pipeline.analytics import greeks, market
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    load_positions,
    lookback,
    partition_days,
    sessions_with_lookback,
)
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.settings import risk_free_rate

RISK_GROUP = "risk"
VOL_LOOKBACK = market.REALIZED_VOL_WINDOW + 1


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    ins={"prices": AssetIn(partition_mapping=lookback(VOL_LOOKBACK))},
)
def position_greeks(
    context: AssetExecutionContext,
    prices: pd.DataFrame,
    position_values: pd.DataFrame,
    database: PostgresResource,
) -> pd.DataFrame:
    """Black-Scholes Greeks per contract and per position for every held position and day.
    Volatility: implied from the option's market price where it converges, else the
    underlying's 30-session realized volatility; inputs and the choice are stored. Expired
    options are zero; missing inputs use the seed's fallback table, marked `fallback`."""
    days = partition_days(context)
    with database.connect() as conn:
        positions = load_positions(conn)
    held = position_values[["trade_date", "position_id", "portfolio_id", "symbol",
                            "position_type", "quantity", "multiplier"]].merge(
        positions[["id", "underlying", "option_right", "strike", "expiry"]],
        left_on="position_id", right_on="id",
    )  # fmt: skip
    sessions = sessions_with_lookback(days, VOL_LOOKBACK)
    closes = market.close_matrix(prices, sessions)
    vols = market.realized_volatility(closes)
    price_source = prices.set_index(["symbol", "trade_date"])["source"]

    days_held = held["trade_date"]
    held["underlying_price"] = market.lookup(closes, days_held, held["underlying"])
    held["realized_vol"] = market.lookup(vols, days_held, held["underlying"])
    held["option_price"] = market.lookup(closes, days_held, held["symbol"])
    sources = price_source.reindex(pd.MultiIndex.from_arrays([held["symbol"], held["trade_date"]]))
    held["option_price_is_market"] = (sources.notna() & sources.ne("model")).to_numpy()
    result = greeks.position_greeks(held, risk_free_rate())
    counts = result["source"].value_counts().to_dict()
    context.add_output_metadata({f"{k}_rows": int(v) for k, v in counts.items()})
    if counts.get("fallback"):
        context.log.warning(f"{counts['fallback']} option rows use the fallback Greeks table")
    return result


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
)
def portfolio_greeks(position_greeks: pd.DataFrame) -> pd.DataFrame:
    """Portfolio delta, gamma, theta, vega, rho, dollar delta and delta-adjusted exposure for
    the views `portfolio`, `longs` and `shorts`."""
    return greeks.portfolio_greeks(position_greeks)
