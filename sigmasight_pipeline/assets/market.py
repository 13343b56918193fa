"""Market data assets: securities, prices and returns."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from sigmasight_pipeline.analytics import market
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    load_positions,
    partition_days,
    positions_spec,
    sessions_with_lookback,
)
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import read_frame
from sigmasight_pipeline.resources.market_data import BAR_COLUMNS, MarketDataResource
from sigmasight_pipeline.settings import risk_free_rate

MARKET_GROUP = "market_data"


@asset(
    deps=[positions_spec],
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
    pool="market_data_api",
)
def securities(
    context: AssetExecutionContext, database: PostgresResource, market_data: MarketDataResource
) -> pd.DataFrame:
    """Every held symbol, the underlyings of held options and the factor ETFs, with type,
    sector and industry. OCC symbols are parsed into root, expiry, right and strike. Sector and
    industry already stored are reused; only new symbols are asked of the provider."""
    with database.connect() as conn:
        positions = load_positions(conn)
        cached = read_frame(conn, "SELECT symbol, sector, industry FROM sigmasight.securities")
    table = market.securities_table(positions["symbol"])
    table = table.drop(columns=["sector", "industry"]).merge(cached, on="symbol", how="left")
    unknown = table.loc[
        table["security_type"].ne("OPTION") & table["sector"].isna(), "symbol"
    ].tolist()
    if unknown:
        # Providers never raise here: a failed lookup leaves the fields empty, never blocks.
        info = market_data.get_provider().security_info(unknown).set_index("symbol")
        table = table.set_index("symbol")
        table.update(info[["sector", "industry"]])
        table = table.reset_index()
    context.add_output_metadata(
        {
            "symbols": len(table),
            "options": int(table["security_type"].eq("OPTION").sum()),
            "enriched": len(unknown),
            "without_sector": int(
                (table["security_type"].ne("OPTION") & table["sector"].isna()).sum()
            ),
        }
    )
    return table[market.SECURITY_COLUMNS]


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
    pool="market_data_api",
)
def prices(
    context: AssetExecutionContext,
    securities: pd.DataFrame,
    database: PostgresResource,
    market_data: MarketDataResource,
) -> pd.DataFrame:
    """Daily OHLCV for every security on each trading day. A (symbol, day) already stored is
    kept, never fetched again; an option with no bar is priced by Black-Scholes from its
    underlying's close and 30-day realized volatility (source `model`); a stock with no bar
    stays absent and is listed in the run's metadata and the `prices_complete` check."""
    days = partition_days(context)
    wanted = market.wanted_pairs(securities, days)
    with database.connect() as conn:
        stored = read_frame(
            conn,
            "SELECT symbol, trade_date, open, high, low, close, volume, source "
            "FROM sigmasight.prices WHERE trade_date BETWEEN %s AND %s",
            (days[0].date(), days[-1].date()),
        )
        to_fetch = market.missing_pairs(wanted, stored)
        context.log.info(
            f"{len(wanted)} (symbol, day) pairs wanted, {len(wanted) - len(to_fetch)} stored, "
            f"fetching {len(to_fetch)} from {market_data.provider}"
        )
        fetched = market_data.get_provider().daily_bars(
            to_fetch.assign(trade_date=to_fetch["trade_date"].dt.date)[["symbol", "trade_date"]]
        )
        fetched["trade_date"] = pd.to_datetime(fetched["trade_date"])
        still_missing = market.missing_pairs(to_fetch, fetched)
        options = still_missing[still_missing["security_type"].eq("OPTION")].merge(
            securities[["symbol", "underlying", "option_right", "strike", "expiry"]], on="symbol"
        )
        modelled = market.empty_bars()
        if not options.empty:
            history = sessions_with_lookback(days, market.REALIZED_VOL_WINDOW + 1)
            underlying_prices = read_frame(
                conn,
                "SELECT symbol, trade_date, close FROM sigmasight.prices "
                "WHERE symbol = ANY(%s) AND trade_date BETWEEN %s AND %s",
                (list(options["underlying"].unique()), history[0].date(), history[-1].date()),
            )
            underlying_prices = pd.concat(
                [underlying_prices, fetched[["symbol", "trade_date", "close"]]]
            ).drop_duplicates(["symbol", "trade_date"], keep="last")
            modelled = market.model_option_bars(
                options, market.close_matrix(underlying_prices, history), risk_free_rate()
            )
    missing = market.missing_pairs(still_missing, modelled)
    frames = [df for df in (stored, fetched, modelled) if not df.empty]
    if not frames:
        context.log.warning("no securities to price: load a portfolio first (sigmasight ingest)")
        return pd.DataFrame(columns=BAR_COLUMNS)
    result = pd.concat(frames)
    result = result.drop_duplicates(["symbol", "trade_date"], keep="first")
    context.add_output_metadata(
        {
            "already_stored": len(stored),
            "fetched": len(fetched),
            "model_priced": len(modelled),
            "missing": len(missing),
            "missing_symbols": MetadataValue.md(market.describe_missing(missing)),
        }
    )
    return result[BAR_COLUMNS].sort_values(["trade_date", "symbol"]).reset_index(drop=True)


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
    ins={
        "prices": AssetIn(
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-1, allow_nonexistent_upstream_partitions=True
            )
        )
    },
)
def returns(context: AssetExecutionContext, prices: pd.DataFrame) -> pd.DataFrame:
    """Daily simple return per symbol: close on D over close on the previous session, minus 1.
    No row when either close is missing (a gap is never a zero return)."""
    days = partition_days(context)
    return market.daily_returns(prices, days, sessions_with_lookback(days, 1))
