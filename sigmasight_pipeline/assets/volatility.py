"""Volatility: realized (21/63/252 sessions), EWMA, HAR-RV forecast and percentile, per symbol
(chunks of symbols) and per portfolio return series (chunks of portfolios), plus each
portfolio's ex-ante volatility from today's exposures."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output, asset

from sigmasight_pipeline.analytics import market, volatility
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    SYMBOL_TABLES_POOL,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    UnderlyingRows,
    lookback,
    on_underlyings,
    partition_days,
    portfolio_chunks,
    portfolios_in,
    read_risk_rows,
    run_scope,
    scope_symbols,
    sessions_with_lookback,
    stock_symbols,
    symbols_in,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import TableReader, TableWrite, chunked

RISK_GROUP = "risk"
HISTORY = volatility.HISTORY_SESSIONS
EX_ANTE_WINDOW = 60
SYMBOLS_PER_CHUNK = 500
PORTFOLIO_VOL_COLUMNS = [
    "trade_date", "portfolio_id", *volatility.VOLATILITY_COLUMNS, "vol_ex_ante",
    "vol_ex_ante_usd",
]  # fmt: skip


def _returns_block(frame: pd.DataFrame, sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """Daily returns as sessions x symbols over exactly `sessions` (NaN where missing)."""
    return market.returns_matrix(frame).reindex(pd.DatetimeIndex(sessions, name="trade_date"))


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    pool=SYMBOL_TABLES_POOL,
    retry_policy=TRANSIENT_RETRY,
    ins={"returns": AssetIn(partition_mapping=lookback(HISTORY))},
    deps=["securities"],
    check_specs=[schema_check_spec("symbol_volatility")],
)
def symbol_volatility(
    context: AssetExecutionContext, returns: TableReader, database: PostgresResource
):
    """Per stock and ETF: realized volatility over 21, 63 and 252 sessions, EWMA (lambda
    0.94), a HAR-RV forecast of the next 21 sessions (Corsi 2009, fitted on the last 252) and
    the percentile of today's 21-day volatility in its last 252 sessions; NULL with a reason
    where the history is too short. Chunks of symbols."""
    url = database.url()
    days = partition_days(context)
    sessions = sessions_with_lookback(days, HISTORY)
    scope = run_scope(context)
    symbols = stock_symbols(url, scope)

    def chunks():
        for chunk in chunked(symbols, SYMBOLS_PER_CHUNK):
            frame = returns.frame(["symbol", "trade_date", "daily_return"], symbols_in(chunk))
            block = _returns_block(frame, sessions).reindex(columns=chunk)
            yield volatility.volatility_measures(block, days)

    validator = TableValidator("symbol_volatility")
    replace = symbols_in(scope_symbols(url, scope))
    yield Output(TableWrite(chunks(), replace=replace, observers=[validator]))
    yield validator.result()


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    ins={
        "portfolio_returns": AssetIn(partition_mapping=lookback(HISTORY)),
        "returns": AssetIn(partition_mapping=lookback(EX_ANTE_WINDOW - 1)),
    },
    check_specs=[schema_check_spec("portfolio_volatility")],
)
def portfolio_volatility(
    context: AssetExecutionContext,
    portfolio_returns: TableReader,
    position_values: TableReader,
    position_greeks: TableReader,
    returns: TableReader,
    database: PostgresResource,
):
    """The same measures on each portfolio's daily time-weighted return (portfolio_returns),
    where its history allows, and its ex-ante volatility: sqrt(252 e'Se)
    on today's exposures (options delta-adjusted on their underlying) and the 60-session
    covariance of the underlyings' returns, in dollars and as a fraction of gross value."""
    url = database.url()
    days = partition_days(context)
    sessions = sessions_with_lookback(days, HISTORY)
    scope = run_scope(context)

    def chunks():
        symbol_returns = UnderlyingRows(returns, ["symbol", "trade_date", "daily_return"], scope)
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            series = portfolio_returns.frame(
                ["trade_date", "portfolio_id", "twr_daily", "gross_value_usd"], portfolios_in(ids)
            )
            series["trade_date"] = pd.to_datetime(series["trade_date"], cache=False)
            wide = series.pivot(index="trade_date", columns="portfolio_id", values="twr_daily")
            wide = wide.reindex(pd.DatetimeIndex(sessions, name="trade_date"))
            realized = volatility.volatility_measures(wide, days, id_column="portfolio_id")
            rows = read_risk_rows(
                url, ids, position_values, position_greeks, run_id=context.run.run_id
            )
            exposures = on_underlyings(rows)
            underlyings = sorted(exposures["underlying"].dropna().unique())
            block = market.returns_matrix(symbol_returns.of(underlyings))
            values = series[series["trade_date"].isin(days)].rename(
                columns={"gross_value_usd": "total_value"}
            )
            ex_ante = volatility.ex_ante_volatility(exposures, block, values, window=EX_ANTE_WINDOW)
            merged = realized.merge(
                ex_ante.rename(columns={"n_obs": "ex_ante_obs", "reason": "ex_ante_reason"}),
                on=["trade_date", "portfolio_id"],
                how="inner",
            )
            notes = merged[["reason", "ex_ante_reason"]]
            merged["reason"] = notes.apply(
                lambda r: "; ".join(x for x in r if isinstance(x, str)) or None, axis=1
            )
            yield merged[PORTFOLIO_VOL_COLUMNS]

    validator = TableValidator("portfolio_volatility")
    yield Output(TableWrite(chunks(), replace=scope.portfolio_filter(), observers=[validator]))
    yield validator.result()
