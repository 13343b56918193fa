"""Portfolio assets: position values and daily portfolio snapshots."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, asset

from sigmasight_pipeline.analytics import valuation
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    load_positions,
    lookback,
    partition_days,
    positions_spec,
    sessions_with_lookback,
)
from sigmasight_pipeline.resources.database import PostgresResource

PORTFOLIO_GROUP = "portfolio"
SNAPSHOT_WINDOW = 90
PRICE_LOOKBACK = valuation.MAX_CARRY_FORWARD_SESSIONS + 1


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=PORTFOLIO_GROUP,
    kinds={"postgres", "pandas"},
    deps=[positions_spec],
    ins={"prices": AssetIn(partition_mapping=lookback(PRICE_LOOKBACK))},
)
def position_values(
    context: AssetExecutionContext, prices: pd.DataFrame, database: PostgresResource
) -> pd.DataFrame:
    """Price, market value (|q| x price x multiplier), exposure (q x price x multiplier),
    cost basis, unrealized and daily P&L of every position on each day from its entry date on.
    A missing close is carried forward up to 5 sessions (flagged), then the row is `missing`."""
    days = partition_days(context)
    with database.connect() as conn:
        positions = load_positions(conn)
    values = valuation.position_values(
        positions, prices, sessions_with_lookback(days, PRICE_LOOKBACK), days
    )
    sources = values["price_source"].value_counts().to_dict() if len(values) else {}
    context.add_output_metadata(
        {
            "positions": len(positions),
            "carried_forward": int(sources.get("carried_forward", 0)),
            "missing_price": int(sources.get("missing", 0)),
        }
    )
    if sources.get("missing"):
        context.log.warning(
            "no price for: "
            + ", ".join(sorted(values.loc[values["price_source"].eq("missing"), "symbol"].unique()))
        )
    return values


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=PORTFOLIO_GROUP,
    kinds={"postgres", "pandas"},
    ins={"position_values": AssetIn(partition_mapping=lookback(SNAPSHOT_WINDOW - 1))},
)
def portfolio_snapshots(
    context: AssetExecutionContext,
    position_values: pd.DataFrame,
    portfolio_greeks: pd.DataFrame,
    portfolio_factor_exposures: pd.DataFrame,
    portfolio_risk_metrics: pd.DataFrame,
) -> pd.DataFrame:
    """Per portfolio and day: total value, long/short/gross/net exposure, position counts by
    type, daily P&L and P&L over the trailing 90 sessions (window_pnl, from window_start), the
    portfolio Greeks, the factor betas and the risk metrics of the day."""
    days = partition_days(context)
    sessions = sessions_with_lookback(days, SNAPSHOT_WINDOW - 1)
    snapshots = valuation.portfolio_snapshots(position_values, sessions, days, SNAPSHOT_WINDOW)
    return valuation.enrich_snapshots(
        snapshots, portfolio_greeks, portfolio_factor_exposures, portfolio_risk_metrics
    )
