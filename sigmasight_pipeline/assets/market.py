"""Market data assets: securities, prices and returns (symbol level, shared by all portfolios)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset
from psycopg import sql

from sigmasight_pipeline.analytics import market
from sigmasight_pipeline.assets.common import (
    MARKET_DATA_API_POOL,
    PARTITIONED,
    SINGLE_RUN,
    SYMBOL_TABLES_POOL,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    all_of,
    lookback,
    partition_days,
    positions_spec,
    run_scope,
    scope_symbols,
    sessions_with_lookback,
    symbols_in,
    universe_symbols,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import TableReader, TableWrite, chunked
from sigmasight_pipeline.resources.market_data import MarketDataResource
from sigmasight_pipeline.resources.tables import query_frame
from sigmasight_pipeline.settings import risk_free_rate

MARKET_GROUP = "market_data"
SYMBOLS_PER_CHUNK = 2_000


@asset(
    deps=[positions_spec],
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
    pool=MARKET_DATA_API_POOL,
    retry_policy=TRANSIENT_RETRY,
)
def securities(
    context: AssetExecutionContext, database: PostgresResource, market_data: MarketDataResource
) -> pd.DataFrame:
    """Every held symbol, the underlyings of held options and the factor ETFs, with type,
    sector and industry. OCC symbols are parsed into root, expiry, right and strike. Sector and
    industry already stored are reused; only new symbols are asked of the provider."""
    url = database.url()
    held = query_frame(url, "SELECT DISTINCT symbol FROM sigmasight.positions")
    cached = query_frame(url, "SELECT symbol, sector, industry FROM sigmasight.securities")
    table = market.securities_table(held["symbol"])
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
    pool=MARKET_DATA_API_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("prices")],
)
def prices(
    context: AssetExecutionContext,
    securities: pd.DataFrame,
    database: PostgresResource,
    market_data: MarketDataResource,
):
    """Daily OHLCV for every security on each trading day. A (symbol, day) already stored is
    kept, never fetched again; an option with no bar is priced by Black-Scholes from its
    underlying's close and 30-day realized volatility (source `model`, recomputed each run); a
    stock with no bar stays absent and is listed in the run's metadata and checks."""
    url = database.url()
    days = partition_days(context)
    symbols = scope_symbols(url, run_scope(context))
    if symbols is not None:
        securities = securities[securities["symbol"].isin(symbols)]
    wanted = market.wanted_pairs(securities, days)
    stored = query_frame(
        url,
        f"SELECT symbol, trade_date, source FROM sigmasight.prices "
        f"WHERE trade_date BETWEEN '{days[0]:%Y-%m-%d}' AND '{days[-1]:%Y-%m-%d}'",
    )
    kept = stored[stored["source"].ne("model")]
    to_fetch = market.missing_pairs(wanted, kept)
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
        underlyings = list(options["underlying"].unique())
        underlying_prices = query_frame(
            url,
            f"SELECT symbol, trade_date, close FROM sigmasight.prices "
            f"WHERE trade_date BETWEEN '{history[0]:%Y-%m-%d}' AND '{history[-1]:%Y-%m-%d}' "
            f"AND source <> 'model' AND {symbols_in(underlyings).as_string(None)}",
        )
        fresh = fetched.loc[fetched["symbol"].isin(underlyings), ["symbol", "trade_date", "close"]]
        underlying_prices = pd.concat([underlying_prices, fresh]).drop_duplicates(
            ["symbol", "trade_date"], keep="last"
        )
        modelled = market.model_option_bars(
            options, market.close_matrix(underlying_prices, history), risk_free_rate()
        )
    missing = market.missing_pairs(still_missing, modelled)
    metadata = {
        "already_stored": len(kept),
        "fetched": len(fetched),
        "model_priced": len(modelled),
        "missing": len(missing),
        "missing_symbols": MetadataValue.md(market.describe_missing(missing)),
    }
    new_rows = pd.concat([f for f in (fetched, modelled) if len(f)] or [market.empty_bars()])
    validator = TableValidator("prices")
    # Model prices are recomputed every run: their old rows go, market bars stay.
    replace = all_of(symbols_in(symbols), sql.SQL("source = 'model'"))
    rows = new_rows[market.BAR_COLUMNS].sort_values(["trade_date", "symbol"])
    yield Output(TableWrite(rows, replace=replace, observers=[validator]), metadata=metadata)
    yield validator.result()


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
    pool=SYMBOL_TABLES_POOL,
    retry_policy=TRANSIENT_RETRY,
    ins={"prices": AssetIn(partition_mapping=lookback(1))},
    check_specs=[schema_check_spec("returns")],
)
def returns(context: AssetExecutionContext, prices: TableReader, database: PostgresResource):
    """Daily simple return per symbol: close on D over close on the previous session, minus 1.
    No row when either close is missing (a gap is never a zero return). Computed in chunks of
    symbols."""
    days = partition_days(context)
    sessions = sessions_with_lookback(days, 1)
    scope = run_scope(context)
    symbols = universe_symbols(database.url(), scope)

    def chunks():
        for chunk in chunked(symbols, SYMBOLS_PER_CHUNK):
            closes = prices.frame(["symbol", "trade_date", "close"], where=symbols_in(chunk))
            yield market.daily_returns(closes, days, sessions)

    validator = TableValidator("returns")
    replace = symbols_in(scope_symbols(database.url(), scope))
    yield Output(TableWrite(chunks(), replace=replace, observers=[validator]))
    yield validator.result()
