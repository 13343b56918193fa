"""Market data assets: securities, prices and returns (symbol level, shared by all portfolios)."""

from dataclasses import dataclass, field

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue, Output, asset
from psycopg import sql

from sigmasight_pipeline.analytics import market, quality
from sigmasight_pipeline.analytics.instruments import OPTION_TYPES
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
    stock_symbols,
    symbols_in,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import (
    CompanionRows,
    TableReader,
    TableWrite,
    chunked,
)
from sigmasight_pipeline.resources.market_data import ISSUE_COLUMNS, MarketDataResource
from sigmasight_pipeline.resources.tables import query_frame
from sigmasight_pipeline.settings import risk_free_rate
from sigmasight_pipeline.warning_checks import (
    PRICES_COMPLETE_SPEC,
    RETURNS_PLAUSIBLE_SPEC,
    PricesComplete,
    flagged_returns_warning,
)

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
OPTIONS_PER_CHUNK = 2_000


@dataclass
class PriceFetch:
    """What one prices run found, over its chunks: counts, the provider's stop, the check."""

    days: pd.DatetimeIndex
    stored: int = 0
    fetched: int = 0
    model_priced: int = 0
    fatal: str | None = None
    outcome: quality.IssueSummary = field(default_factory=quality.IssueSummary)
    complete: PricesComplete = field(init=False)

    def __post_init__(self) -> None:
        self.complete = PricesComplete(self.days)

    def metadata(self) -> dict:
        lines = self.outcome.lines(self.fatal)
        return {
            "already_stored": self.stored,
            "fetched": self.fetched,
            "model_priced": self.model_priced,
            "without_market_price": self.complete.failing,
            "outcome": MetadataValue.md("\n".join(f"- {x}" for x in lines) or "complete"),
        }


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=MARKET_GROUP,
    kinds={"postgres", "pandas"},
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
    """Prices of every security on each session: market bars from the provider, and
    Black-Scholes prices (source `model`) for options with no bar. A (symbol, day) already
    stored as a market bar is never fetched again, nor one the provider answered has no data
    or sent a bad bar for; what failed or was not yet published is asked again. Every pair
    without a market price is written to `price_issues` with its reason, in the same
    transaction. A provider that stops (bad key, plan) keeps what it fetched. Stocks and ETFs
    are fetched together (so the provider can plan its calls), options in chunks."""
    url = database.url()
    days = partition_days(context)
    symbols = scope_symbols(url, run_scope(context))
    if symbols is not None:
        securities = securities[securities["symbol"].isin(symbols)]
    securities = securities.merge(_first_held(url), on="symbol", how="left")
    provider = market_data.get_provider()
    run = PriceFetch(days)
    is_option = securities["security_type"].eq("OPTION")
    stock_bars: list[pd.DataFrame] = []  # this run's stock closes, for the option model

    def chunks():
        groups = [securities[~is_option]] + [
            securities[is_option].iloc[i : i + OPTIONS_PER_CHUNK]
            for i in range(0, int(is_option.sum()), OPTIONS_PER_CHUNK)
        ]
        for group in groups:
            rows, issues, wanted = _price_chunk(url, provider, group, days, run, stock_bars)
            if group is groups[0]:
                stock_bars.append(rows[["symbol", "trade_date", "close"]])
            run.complete(issues, wanted)
            run.outcome.add(issues)
            yield rows
            yield CompanionRows("price_issues", issues)

    validator = TableValidator("prices")
    # Model prices are recomputed every run: their old rows go, market bars stay.
    write = TableWrite(
        chunks(),
        replace=all_of(symbols_in(symbols), sql.SQL("source = 'model'")),
        observers=[validator],
        summaries=[run.metadata],
        companions={"price_issues": symbols_in(symbols)},
    )
    yield Output(write)
    for line in run.outcome.lines(run.fatal):
        context.log.warning(line)
    yield validator.result()
    yield run.complete.result()
    if run.fatal:
        # What was fetched is stored (above); the run stops here with the provider's reason.
        raise Failure(description=run.fatal, allow_retries=False)


def _first_held(url: str) -> pd.DataFrame:
    """symbol, first_held: the earliest entry date of the positions in each option contract
    (an option is priced from then to its expiry, see `market.wanted_pairs`)."""
    frame = query_frame(
        url,
        sql.SQL(
            "SELECT symbol, min(entry_date) AS first_held FROM sigmasight.positions "
            "WHERE position_type = ANY({}) GROUP BY symbol"
        ).format(sql.Literal(list(OPTION_TYPES))),
    )
    return frame.assign(first_held=pd.to_datetime(frame["first_held"], cache=False)).reindex(
        columns=["symbol", "first_held"]
    )


def _price_chunk(
    url: str,
    provider,
    group: pd.DataFrame,
    days: pd.DatetimeIndex,
    run: PriceFetch,
    stock_bars: list[pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """New price rows, the issues and the number of wanted pairs of one chunk of securities."""
    names = sorted(group["symbol"])
    wanted = market.wanted_pairs(group, days)
    where = all_of(
        sql.SQL("trade_date BETWEEN {} AND {}").format(
            sql.Literal(days[0].date()), sql.Literal(days[-1].date())
        ),
        symbols_in(names),
    )
    stored = query_frame(
        url,
        sql.SQL(
            "SELECT symbol, trade_date FROM sigmasight.prices WHERE {} AND source <> 'model'"
        ).format(where),
    )
    final = query_frame(
        url,
        sql.SQL(
            "SELECT trade_date, symbol, kind, detail FROM sigmasight.price_issues "
            "WHERE {} AND kind = ANY({})"
        ).format(where, sql.Literal(list(quality.FINAL_KINDS))),
    )
    to_fetch = market.missing_pairs(market.missing_pairs(wanted, stored), final)
    if run.fatal is None:
        result = provider.fetch_bars(
            to_fetch.assign(trade_date=to_fetch["trade_date"].dt.date)[["symbol", "trade_date"]]
        )
        run.fatal = result.fatal
        fetched = result.bars.assign(
            trade_date=pd.to_datetime(result.bars["trade_date"], cache=False)
        )
        reported = result.issues
    else:  # the provider stopped on an earlier chunk: nothing more is asked of it
        fetched = market.empty_bars()
        reported = to_fetch.assign(kind="failed", detail=run.fatal)[ISSUE_COLUMNS]
    modelled = _model_priced_options(
        url, market.missing_pairs(to_fetch, fetched), group, stock_bars, days
    )
    run.stored += len(stored)
    run.fetched += len(fetched)
    run.model_priced += len(modelled)
    market_priced = market.stack([stored, fetched, final], ["symbol", "trade_date"])
    issues = quality.price_issues(wanted, market_priced, modelled, reported)
    issues = market.stack([issues, final], quality.PRICE_ISSUE_COLUMNS)
    rows = market.stack([fetched, modelled], PRICE_COLUMNS)
    return rows.sort_values(["trade_date", "symbol"]), issues, len(wanted)


def _model_priced_options(
    url: str,
    missing: pd.DataFrame,
    securities: pd.DataFrame,
    stock_bars: list[pd.DataFrame],
    days: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Black-Scholes bars for the options among `missing`, from their underlyings' closes
    (stored before this run, or fetched by it: `stock_bars`)."""
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
    fresh = [bars[bars["symbol"].isin(underlyings)] for bars in stock_bars]
    closes = market.stack([stored, *fresh], ["symbol", "trade_date", "close"])
    closes = closes.drop_duplicates(["symbol", "trade_date"], keep="last")
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
    """Daily simple return per stock and ETF: close on D over close on the previous session,
    minus 1. No row when either close is missing (a gap is never a zero return). A move beyond
    40 % is flagged: `split` when a split on record explains it (closes not split-adjusted),
    else why it is suspicious. Computed in chunks of symbols.

    Options have none: every reader takes the returns of underlyings and ETFs (betas,
    volatility, correlations, risk), and an option's P&L comes from its prices. At 1,000
    portfolios the options' returns were 9 rows in 10 of this table."""
    days = partition_days(context)
    sessions = sessions_with_lookback(days, 1)
    scope = run_scope(context)
    stocks = stock_symbols(database.url(), scope)
    splits = market_data.get_provider().splits(stocks, sessions[0].date(), days[-1].date())

    def chunks():
        for chunk in chunked(stocks, SYMBOLS_PER_CHUNK):
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
