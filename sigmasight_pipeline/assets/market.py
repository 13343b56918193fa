"""Market data assets: securities, prices and returns (symbol level, shared by all portfolios)."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    Failure,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)
from psycopg import sql

from sigmasight_pipeline.analytics import market, quality
from sigmasight_pipeline.analytics.instruments import is_option_symbol
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
from sigmasight_pipeline.checks import (
    PRICES_COMPLETE_SPEC,
    RETURNS_PLAUSIBLE_SPEC,
    TableValidator,
    flagged_returns_warning,
    prices_complete_result,
    schema_check_spec,
)
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


PRICE_COLUMNS = ["symbol", "trade_date", "open", "high", "low", "close", "volume", "source"]


@multi_asset(
    outs={
        "prices": AssetOut(
            metadata=PARTITIONED,
            kinds={"postgres", "pandas"},
            description=(
                "Daily OHLCV for every security on each trading day: market bars from the "
                "provider, and Black-Scholes prices (source `model`) for options with no bar."
            ),
        ),
        "price_issues": AssetOut(
            metadata=PARTITIONED,
            kinds={"postgres", "pandas"},
            description=(
                "Every wanted (symbol, session) without a price, and why: failed (provider "
                "error, fetched again next run), rejected (bad bar), no_data, not_published."
            ),
        ),
    },
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    group_name=MARKET_GROUP,
    pool=MARKET_DATA_API_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("prices"), PRICES_COMPLETE_SPEC],
)
def prices(
    context: AssetExecutionContext,
    securities: pd.DataFrame,
    database: PostgresResource,
    market_data: MarketDataResource,
):
    """Prices of every security on each session. A (symbol, day) already stored as a market
    bar is kept and never fetched again; only what is missing (or failed last time) is asked
    of the provider. Bad bars are rejected at the edge, and every pair left without a price is
    an issue with its reason; a provider that stops (bad key, plan) keeps what it fetched."""
    url = database.url()
    days = partition_days(context)
    symbols = scope_symbols(url, run_scope(context))
    if symbols is not None:
        securities = securities[securities["symbol"].isin(symbols)]
    wanted = market.wanted_pairs(securities, days)
    day_range = sql.SQL("trade_date BETWEEN {} AND {}").format(
        sql.Literal(days[0].date()), sql.Literal(days[-1].date())
    )
    stored = query_frame(
        url,
        sql.SQL(
            "SELECT symbol, trade_date FROM sigmasight.prices WHERE {} AND source <> 'model' AND {}"
        ).format(day_range, symbols_in(symbols)),
    )
    to_fetch = market.missing_pairs(wanted, stored)
    context.log.info(
        f"{len(wanted):,} (symbol, day) pairs wanted, {len(wanted) - len(to_fetch):,} stored, "
        f"fetching {len(to_fetch):,} from {market_data.provider}"
    )
    result = market_data.get_provider().fetch_bars(
        to_fetch.assign(trade_date=to_fetch["trade_date"].dt.date)[["symbol", "trade_date"]]
    )
    fetched = result.bars.assign(trade_date=pd.to_datetime(result.bars["trade_date"]))
    modelled = _model_priced_options(
        url, market.missing_pairs(to_fetch, fetched), securities, fetched, days
    )
    new_rows = pd.concat([f for f in (fetched, modelled) if len(f)] or [market.empty_bars()])
    priced = pd.concat([stored, new_rows[["symbol", "trade_date"]]]) if len(new_rows) else stored
    issues = quality.price_issues(wanted, priced, result.issues)
    lines = quality.outcome_lines(issues, result.fatal)
    for line in lines:
        context.log.warning(line)
    validator = TableValidator("prices")
    # Model prices are recomputed every run: their old rows go, market bars stay.
    replace = all_of(symbols_in(symbols), sql.SQL("source = 'model'"))
    rows = new_rows[PRICE_COLUMNS].sort_values(["trade_date", "symbol"])
    metadata = {
        "already_stored": len(stored),
        "fetched": len(fetched),
        "model_priced": len(modelled),
        "without_price": len(issues),
        "outcome": MetadataValue.md("\n".join(f"- {line}" for line in lines) or "complete"),
    }
    yield Output(
        TableWrite(rows, replace=replace, observers=[validator]),
        output_name="prices",
        metadata=metadata,
    )
    yield Output(TableWrite(issues, replace=symbols_in(symbols)), output_name="price_issues")
    yield validator.result()
    yield prices_complete_result(issues, wanted, days)
    if result.fatal:
        # What was fetched is stored (above); the run stops here with the provider's reason.
        raise Failure(description=result.fatal, allow_retries=False)


def _model_priced_options(
    url: str,
    missing: pd.DataFrame,
    securities: pd.DataFrame,
    fetched: pd.DataFrame,
    days: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Black-Scholes bars for the options among `missing`, from their underlyings' closes."""
    options = missing[missing["security_type"].eq("OPTION")].merge(
        securities[["symbol", "underlying", "option_right", "strike", "expiry"]], on="symbol"
    )
    if options.empty:
        return market.empty_bars()
    history = sessions_with_lookback(days, market.REALIZED_VOL_WINDOW + 1)
    underlyings = sorted(options["underlying"].unique())
    stored = query_frame(
        url,
        sql.SQL(
            "SELECT symbol, trade_date, close FROM sigmasight.prices WHERE trade_date BETWEEN "
            "{} AND {} AND source <> 'model' AND {}"
        ).format(
            sql.Literal(history[0].date()), sql.Literal(history[-1].date()), symbols_in(underlyings)
        ),
    )
    fresh = fetched.loc[fetched["symbol"].isin(underlyings), ["symbol", "trade_date", "close"]]
    closes = pd.concat([stored, fresh]).drop_duplicates(["symbol", "trade_date"], keep="last")
    return market.model_option_bars(options, market.close_matrix(closes, history), risk_free_rate())


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
    pool=SYMBOL_TABLES_POOL,
    retry_policy=TRANSIENT_RETRY,
    ins={"prices": AssetIn(partition_mapping=lookback(1))},
    check_specs=[schema_check_spec("returns"), RETURNS_PLAUSIBLE_SPEC],
)
def returns(
    context: AssetExecutionContext,
    prices: TableReader,
    database: PostgresResource,
    market_data: MarketDataResource,
):
    """Daily simple return per symbol: close on D over close on the previous session, minus 1.
    No row when either close is missing (a gap is never a zero return). A move beyond 40 % is
    flagged: `split` when a split on record explains it (closes not split-adjusted), else why
    it is suspicious. Computed in chunks of symbols."""
    days = partition_days(context)
    sessions = sessions_with_lookback(days, 1)
    scope = run_scope(context)
    symbols = universe_symbols(database.url(), scope)
    stocks = [s for s in symbols if not is_option_symbol(s)]
    splits = market_data.get_provider().splits(stocks, sessions[0].date(), days[-1].date())

    def chunks():
        for chunk in chunked(symbols, SYMBOLS_PER_CHUNK):
            closes = prices.frame(["symbol", "trade_date", "close"], where=symbols_in(chunk))
            daily = market.daily_returns(closes, days, sessions)
            jumps = market.flag_price_jumps(daily, splits)
            flags = jumps.set_index(["symbol", "trade_date"])["reason"]
            keys = pd.MultiIndex.from_frame(daily[["symbol", "trade_date"]])
            yield daily.assign(flag=flags.reindex(keys).to_numpy())

    validator, plausible = TableValidator("returns"), flagged_returns_warning()
    replace = symbols_in(scope_symbols(database.url(), scope))
    yield Output(
        TableWrite(
            chunks(),
            replace=replace,
            observers=[validator, plausible],
            summaries=[plausible.summary],
        )
    )
    yield validator.result()
    yield plausible.result()
