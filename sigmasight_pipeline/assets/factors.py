"""Short interest, factor betas (chunks of symbols) and position (chunks of portfolios) and
portfolio (one SQL statement) factor exposures."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output, asset
from psycopg import sql

from sigmasight_pipeline.analytics import exposures, factors, market, stress
from sigmasight_pipeline.assets.common import (
    DELTA_EXPOSURE_COLUMNS,
    EXPOSURE_COLUMNS,
    MARKET_DATA_API_POOL,
    PARTITIONED,
    SINGLE_RUN,
    START_EARLY,
    SYMBOL_TABLES_POOL,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    UnderlyingRows,
    load_positions,
    lookback,
    partition_days,
    portfolio_chunks,
    portfolios_in,
    run_scope,
    scope_symbols,
    shared_frame,
    stock_symbols,
    symbols_in,
    with_positions,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import (
    STORAGE_TABLE,
    TableReader,
    TableWrite,
    chunked,
)
from sigmasight_pipeline.resources.market_data import (
    MARKET_ETFS,
    SHORT_INTEREST_FACTOR,
    MarketDataResource,
)
from sigmasight_pipeline.scope import Scope
from sigmasight_pipeline.settings import tlt_duration
from sigmasight_pipeline.sql_checks import PORTFOLIO_FACTOR_RULES
from sigmasight_pipeline.warning_checks import BETA_CAP_SPEC, beta_cap_warning

FACTOR_GROUP = "factors"
BETA_WINDOW = 60
MIN_OBS = 20
SYMBOLS_PER_CHUNK = 500


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name="market_data",
    kinds={"postgres", "pandas"},
    pool=MARKET_DATA_API_POOL,
    retry_policy=TRANSIENT_RETRY,
)
def short_interest(
    context: AssetExecutionContext,
    securities: pd.DataFrame,
    market_data: MarketDataResource,
    database: PostgresResource,
):
    """Short interest of every stock as of each day (% of float, days to cover), from the
    market data provider; ETFs and options have none."""
    days = partition_days(context)
    scoped = scope_symbols(database.url(), run_scope(context))
    stocks = securities.loc[securities["security_type"].eq("STOCK"), "symbol"]
    if scoped is not None:
        stocks = stocks[stocks.isin(scoped)]
    provider = market_data.get_provider()
    frame = provider.short_interest(stocks.tolist(), [d.date() for d in days])
    frame = frame.assign(
        trade_date=pd.to_datetime(frame["trade_date"], cache=False), source=provider.name
    )
    rows = frame.drop_duplicates(["symbol", "trade_date"]).reset_index(drop=True)
    metadata = {"symbols": len(stocks), "with_data": int(rows["symbol"].nunique())}
    return Output(TableWrite(rows, replace=symbols_in(scoped)), metadata=metadata)


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=FACTOR_GROUP,
    kinds={"postgres", "pandas"},
    pool=SYMBOL_TABLES_POOL,
    retry_policy=TRANSIENT_RETRY,
    ins={"returns": AssetIn(partition_mapping=lookback(BETA_WINDOW - 1))},
    deps=["securities"],
    check_specs=[schema_check_spec("factor_betas"), BETA_CAP_SPEC],
)
def factor_betas(context: AssetExecutionContext, returns: TableReader, database: PostgresResource):
    """Betas of every stock and ETF to the seven factor ETFs and to TLT (Rates) over the
    trailing 60 sessions (market: Cov/Var on SPY; styles: OLS on ETF-minus-SPY spreads; rates:
    Cov/Var on TLT; one solve per window for all symbols of a chunk). Fewer than 20
    observations: null beta with the reason."""
    url = database.url()
    days = partition_days(context)
    scope = run_scope(context)
    etfs = list(MARKET_ETFS)
    symbols = stock_symbols(url, scope)
    factor_wide = market.returns_matrix(
        returns.frame(["symbol", "trade_date", "daily_return"], symbols_in(etfs))
    )

    def chunks():
        for chunk in chunked(symbols, SYMBOLS_PER_CHUNK):
            wide = market.returns_matrix(
                returns.frame(["symbol", "trade_date", "daily_return"], symbols_in(chunk))
            )
            index = factor_wide.index.union(wide.index)
            betas = factors.rolling_factor_betas(
                wide.reindex(index=index, columns=chunk),
                factor_wide.reindex(index=index, columns=etfs),
                days,
                window=BETA_WINDOW,
                min_obs=MIN_OBS,
            )
            betas["trade_date"] = pd.to_datetime(betas["trade_date"], cache=False)
            yield betas

    validator, capped = TableValidator("factor_betas"), beta_cap_warning()
    yield Output(
        TableWrite(
            chunks(),
            replace=symbols_in(scope_symbols(url, scope)),
            observers=[validator, capped],
            summaries=[capped.summary],
        )
    )
    yield validator.result()
    yield capped.result()


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata={**PARTITIONED, STORAGE_TABLE: "position_exposures"},
    group_name=FACTOR_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    op_tags=START_EARLY,
    check_specs=[schema_check_spec("position_factor_exposures")],
)
def position_factor_exposures(
    context: AssetExecutionContext,
    factor_betas: TableReader,
    position_values: TableReader,
    position_greeks: TableReader,
    short_interest: TableReader,
    database: PostgresResource,
):
    """Each position's beta to every factor (options carry their underlying's betas, applied
    to delta-adjusted exposure), one row per position-day with a column per factor; the
    dollar exposure to a factor is exposure x its beta. pnl_usd_per_100bp: exposure x rate
    beta x TLT's return for +100 bp (-duration x 1 %, SIGMASIGHT_TLT_DURATION, default 16.5).
    Chunks of portfolios. Stored in position_exposures (the position's own columns); the view
    of this name adds the betas from factor_betas and the short interest (sql/0023). The
    schema check validates the whole rows, betas included."""
    url = database.url()
    scope = run_scope(context)
    duration = tlt_duration()
    run_id = context.run.run_id

    def chunks():
        betas = UnderlyingRows(
            factor_betas, ["trade_date", "symbol", "factor", "beta", "n_obs", "reason"], scope
        )
        short_interests = UnderlyingRows(
            short_interest, ["trade_date", "symbol", "short_interest_pct_float"], scope
        )
        # Every underlying's betas as one wide row per day, pivoted once for all the chunks.
        underlying_betas = exposures.underlying_factor_betas(betas.frame, short_interests.frame)
        del betas, short_interests
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            where = portfolios_in(ids)
            positions = load_positions(url, where, run_id)
            values = with_positions(
                shared_frame(position_values, EXPOSURE_COLUMNS, where, run_id), positions
            )
            greeks = shared_frame(position_greeks, DELTA_EXPOSURE_COLUMNS, where, run_id)
            risk = exposures.risk_exposures(values, greeks)
            frame = exposures.with_factor_betas(risk, underlying_betas)
            frame["pnl_usd_per_100bp"] = stress.pnl_usd_per_100bp(
                frame["exposure"], frame["beta_rates"], duration
            )
            yield frame

    validator = TableValidator("position_factor_exposures")
    yield Output(
        TableWrite(
            chunks(),
            replace=scope.portfolio_filter(),
            columns=POSITION_EXPOSURE_COLUMNS,
            observers=[validator],
        )
    )
    yield validator.result()


# What position_exposures stores of a position_factor_exposures row: the position's own columns
# (its underlying's betas and short interest are read from their tables by the view).
POSITION_EXPOSURE_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "exposure", "pnl_usd_per_100bp",
]  # fmt: skip


PORTFOLIO_FACTOR_COLUMNS = [
    "trade_date", "portfolio_id", "factor", "beta", "dollar_exposure", "coverage",
]  # fmt: skip
# Portfolio beta = sum(exposure x beta) / gross value; coverage = share of gross exposure with
# a beta; dollar exposure NULL when no position has a beta. Summed per portfolio-day on the wide
# rows (a column per factor), then one row per factor: unpivoting the positions first and
# grouping by factor took 5x longer.
_FACTOR_COLUMNS = {**exposures.BETA_COLUMNS, SHORT_INTEREST_FACTOR: "short_interest"}
PORTFOLIO_FACTOR_SELECT = (
    """
WITH exposures AS (
    -- the view position_factor_exposures' rows of the run's days and portfolios: its joins
    -- written out, so that the betas are aggregated for these days only (a filter on the view
    -- does not reach the GROUP BY of underlying_factor_betas inside it). OFFSET 0 keeps the
    -- positions' join out of the view's unnest (see greeks._HELD; a 1,000-portfolio daily
    -- run's SELECT: 5.55 s -> 1.52 s, 0.17 s with merge joins off as well)
    SELECT e.trade_date, e.portfolio_id, e.exposure, """
    + ", ".join(f"u.{c}" for c in exposures.BETA_COLUMNS.values())
    + """,
           si.short_interest_pct_float / 100.0 AS short_interest
    FROM (SELECT * FROM sigmasight.position_exposures
          WHERE trade_date BETWEEN {first} AND {last} AND {scope} OFFSET 0) e
    JOIN sigmasight.positions p ON p.id = e.position_id
    LEFT JOIN (SELECT * FROM sigmasight.underlying_factor_betas
               WHERE trade_date BETWEEN {first} AND {last}) u
        ON u.trade_date = e.trade_date AND u.symbol = p.underlying
    LEFT JOIN (SELECT * FROM sigmasight.short_interest
               WHERE trade_date BETWEEN {first} AND {last}) si
        ON si.trade_date = e.trade_date AND si.symbol = p.underlying
), totals AS (
    SELECT trade_date, portfolio_id, sum(market_value) AS total_value
    FROM sigmasight.position_values
    WHERE trade_date BETWEEN {first} AND {last} AND {scope}
    GROUP BY trade_date, portfolio_id
), sums AS (
    SELECT trade_date, portfolio_id, sum(abs(exposure)) AS gross, """
    + ", ".join(
        f"sum(exposure * {c}) AS {c}_dollars, "
        f"coalesce(sum(abs(exposure)) FILTER (WHERE {c} IS NOT NULL), 0) AS {c}_covered, "
        f"count({c}) AS {c}_with_beta"
        for c in _FACTOR_COLUMNS.values()
    )
    + """
    FROM exposures
    GROUP BY trade_date, portfolio_id
)
SELECT s.trade_date, s.portfolio_id, f.factor,
       CASE WHEN f.with_beta > 0 AND t.total_value > 0 THEN f.dollars / t.total_value END,
       CASE WHEN f.with_beta > 0 THEN f.dollars END,
       CASE WHEN s.gross > 0 THEN f.covered / s.gross END
FROM sums s
LEFT JOIN totals t USING (trade_date, portfolio_id)
CROSS JOIN LATERAL (VALUES """
    + ", ".join(
        f"('{factor}', s.{c}_dollars, s.{c}_covered, s.{c}_with_beta)"
        for factor, c in _FACTOR_COLUMNS.items()
    )
    + """) AS f (factor, dollars, covered, with_beta)
"""
)


def portfolio_factor_select(days: pd.DatetimeIndex, scope: Scope) -> sql.Composed:
    """PORTFOLIO_FACTOR_SELECT over the sessions `days` and the portfolios of `scope`."""
    return sql.SQL(PORTFOLIO_FACTOR_SELECT).format(
        first=sql.Literal(days[0].date()),
        last=sql.Literal(days[-1].date()),
        scope=scope.portfolio_filter(),
    )


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=FACTOR_GROUP,
    kinds={"postgres", "sql"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[PORTFOLIO_FACTOR_RULES.spec()],
)
def portfolio_factor_exposures(
    context: AssetExecutionContext,
    position_factor_exposures: TableReader,
    position_values: TableReader,
    database: PostgresResource,
):
    """Portfolio beta per factor = sum of (exposure / portfolio gross value) x beta, with the
    dollar exposure and the share of exposure that has a beta: one INSERT ... SELECT."""
    days = partition_days(context)
    scope = run_scope(context)
    select = portfolio_factor_select(days, scope)
    replace = scope.portfolio_filter()
    yield Output(
        TableWrite(replace=replace, insert_select=select, columns=PORTFOLIO_FACTOR_COLUMNS)
    )
    yield PORTFOLIO_FACTOR_RULES.run(database.url(), days, replace)
