"""Portfolio risk metrics: beta, volatility, Sharpe/Sortino, drawdown, VaR and CVaR, computed
in chunks of portfolios."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output, asset

from sigmasight_pipeline.analytics import exposures, market, risk
from sigmasight_pipeline.assets.common import (
    DELTA_EXPOSURE_COLUMNS,
    EXPOSURE_COLUMNS,
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    UnderlyingRows,
    load_positions,
    lookback,
    partition_days,
    portfolio_chunks,
    portfolios_in,
    run_scope,
    shared_frame,
    with_positions,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import TableReader, TableWrite
from sigmasight_pipeline.settings import risk_free_rate
from sigmasight_pipeline.warning_checks import VOLATILITY_PLAUSIBLE_SPEC, extreme_volatility_warning

RISK_WINDOW = 60
DRAWDOWN_WINDOW = 90
RISK_METRIC_COLUMNS = [
    "trade_date", "portfolio_id", "beta", "volatility_ann", "sharpe", "sortino", "max_drawdown",
    "var_95_1d", "cvar_95_1d", "var_95_1d_hist", "cvar_95_1d_hist", "var_95_1d_hist_usd",
    "cvar_95_1d_hist_usd", "n_obs", "reason",
]  # fmt: skip


def risk_metrics_chunk(
    portfolio_returns: pd.DataFrame,
    symbol_returns: pd.DataFrame,
    today: pd.DataFrame,
    greeks: pd.DataFrame,
    days: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Risk metrics of one chunk of portfolios.

    portfolio_returns: trade_date, portfolio_id, twr_daily, gross_value_usd over the window and
    its lookback; symbol_returns: trade_date, symbol, daily_return of SPY and the chunk's
    underlyings; today / greeks: the chunk's position values and Greeks on `days`.
    """
    frame = portfolio_returns.assign(
        trade_date=pd.to_datetime(portfolio_returns["trade_date"], cache=False)
    )
    wide = frame.pivot(index="trade_date", columns="portfolio_id", values="twr_daily")
    symbols = market.returns_matrix(symbol_returns)
    wide = wide.reindex(wide.index.union(symbols.index)).sort_index()
    spy = symbols["SPY"] if "SPY" in symbols else pd.Series(dtype=float)
    values = frame.pivot(index="trade_date", columns="portfolio_id", values="gross_value_usd")
    metrics = risk.rolling_risk_metrics(
        wide, spy.reindex(wide.index), days, risk_free_rate(),
        beta_window=RISK_WINDOW, vol_window=RISK_WINDOW, drawdown_window=DRAWDOWN_WINDOW,
        var_window=RISK_WINDOW, total_values=values.reindex(wide.index),
    )  # fmt: skip
    exposure = exposures.risk_exposures(today, greeks)
    # Options put delta-adjusted exposure on their underlying: the covariance is of underlyings.
    on_underlyings = exposure.drop(columns="symbol").rename(columns={"underlying": "symbol"})
    parametric = risk.rolling_parametric_var(on_underlyings, symbols, days, window=RISK_WINDOW)
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
    return merged.merge(held, on=["trade_date", "portfolio_id"])[RISK_METRIC_COLUMNS]


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name="risk",
    kinds={"postgres", "pandas"},
    ins={
        "portfolio_returns": AssetIn(partition_mapping=lookback(DRAWDOWN_WINDOW)),
        "returns": AssetIn(partition_mapping=lookback(RISK_WINDOW - 1)),
    },
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("portfolio_risk_metrics"), VOLATILITY_PLAUSIBLE_SPEC],
)
def portfolio_risk_metrics(
    context: AssetExecutionContext,
    portfolio_returns: TableReader,
    position_values: TableReader,
    returns: TableReader,
    position_greeks: TableReader,
    database: PostgresResource,
):
    """From each portfolio's daily time-weighted return (portfolio_returns: P&L over the
    capital at work, flows excluded): beta to SPY and annualized volatility (60 sessions),
    Sharpe and Sortino, maximum drawdown (90 sessions), historical 1-day 95% VaR/CVaR;
    parametric VaR/CVaR in dollars from the covariance of the underlyings' returns over 60
    sessions and today's exposures."""
    url = database.url()
    days = partition_days(context)
    scope = run_scope(context)

    run_id = context.run.run_id

    def chunks():
        all_returns = UnderlyingRows(
            returns, ["trade_date", "symbol", "daily_return"], scope, also=["SPY"]
        )
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            where = portfolios_in(ids)
            series = portfolio_returns.frame(
                ["trade_date", "portfolio_id", "twr_daily", "gross_value_usd"], where
            )
            positions = load_positions(url, where, run_id)
            today = with_positions(
                shared_frame(position_values, EXPOSURE_COLUMNS, where, run_id), positions
            )
            greeks = shared_frame(position_greeks, DELTA_EXPOSURE_COLUMNS, where, run_id)
            underlyings = sorted(set(today["underlying"].dropna()) | {"SPY"})
            yield risk_metrics_chunk(series, all_returns.of(underlyings), today, greeks, days)

    validator, plausible = TableValidator("portfolio_risk_metrics"), extreme_volatility_warning()
    yield Output(
        TableWrite(
            chunks(),
            replace=scope.portfolio_filter(),
            observers=[validator, plausible],
            summaries=[plausible.summary],
        )
    )
    yield validator.result()
    yield plausible.result()
