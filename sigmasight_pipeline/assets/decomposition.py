"""The factor model's risk: each symbol's specific variance and the factor covariance (chunks
of symbols), then each portfolio's variance split into factors and specific risk, with Euler
contributions per position (chunks of portfolios)."""

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    Output,
    asset,
)
from psycopg import sql

from sigmasight_pipeline.analytics import decomposition, market
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    START_EARLY,
    SYMBOL_TABLES_POOL,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    UnderlyingRows,
    lookback,
    on_underlyings,
    partition_days,
    portfolio_chunks,
    read_risk_rows,
    run_scope,
    scope_symbols,
    stock_symbols,
    symbols_in,
)
from sigmasight_pipeline.checks import (
    SHOWN_KEYS,
    TableValidator,
    check_metadata,
    companion_check_spec,
    companion_validator,
    schema_check_spec,
)
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import (
    CompanionRows,
    TableReader,
    TableWrite,
    chunked,
)
from sigmasight_pipeline.resources.market_data import MARKET_ETFS
from sigmasight_pipeline.resources.tables import query_frame

RISK_GROUP = "risk"
WINDOW = 60  # the factor betas' window
SYMBOLS_PER_CHUNK = 500
RETURN_COLUMNS = ["symbol", "trade_date", "daily_return"]
BETA_COLUMNS = ["trade_date", "symbol", "factor", "beta"]
EULER_TOLERANCE = 1e-6  # relative: the contributions sum to the model volatility


def _regressors(returns: TableReader) -> pd.DataFrame:
    """Sessions x factor regressors (Market, style spreads, Rates) from the ETFs' returns."""
    etfs = market.returns_matrix(returns.frame(RETURN_COLUMNS, symbols_in(list(MARKET_ETFS))))
    return decomposition.factor_regressors(etfs.reindex(columns=list(MARKET_ETFS)))


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    pool=SYMBOL_TABLES_POOL,
    retry_policy=TRANSIENT_RETRY,
    ins={"returns": AssetIn(partition_mapping=lookback(WINDOW - 1))},
    check_specs=[schema_check_spec("specific_risk")],
)
def specific_risk(
    context: AssetExecutionContext,
    returns: TableReader,
    factor_betas: TableReader,
    database: PostgresResource,
):
    """Each stock's and ETF's specific (residual) daily variance over the betas' 60 sessions:
    the variance of r - B f with the stored betas, divided by n - 1 - K. Also writes
    factor_covariance (same transaction): the 60-session covariance of the factor regressors
    (Market = SPY, styles = ETF - SPY, Rates = TLT), daily units."""
    url = database.url()
    days = partition_days(context)
    scope = run_scope(context)
    symbols = stock_symbols(url, scope)
    regressors = _regressors(returns)

    def chunks():
        covariance = decomposition.factor_covariance(regressors, days, window=WINDOW)
        yield CompanionRows("factor_covariance", covariance)
        for chunk in chunked(symbols, SYMBOLS_PER_CHUNK):
            where = symbols_in(chunk)
            wide = market.returns_matrix(returns.frame(RETURN_COLUMNS, where))
            betas = factor_betas.frame(BETA_COLUMNS, where)
            if betas.empty:
                continue
            yield decomposition.specific_variances(
                wide.reindex(columns=chunk), regressors, betas, days, window=WINDOW
            )

    validator = TableValidator("specific_risk")
    replace = symbols_in(scope_symbols(url, scope))
    yield Output(
        TableWrite(
            chunks(), replace=replace, observers=[validator], companions={"factor_covariance": None}
        )
    )
    yield validator.result()


def _or_unknown_betas(betas: pd.DataFrame, days: pd.DatetimeIndex):
    """The betas, or NaN betas of no symbol when none are stored (the model then leaves every
    position out, each with its reason, instead of failing the run)."""
    if not betas.empty:
        return betas
    factors = list(decomposition.MODEL_FACTORS)
    return pd.DataFrame({"trade_date": days[0], "symbol": "", "factor": factors, "beta": np.nan})


def _or_unknown_covariance(covariance: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """The factor covariance, or NaN for every day when none is stored (no factor returns)."""
    if not covariance.empty:
        return covariance
    factors = list(decomposition.MODEL_FACTORS)
    grid = pd.MultiIndex.from_product([days, factors, factors])
    return grid.to_frame(index=False, name=["trade_date", "factor_a", "factor_b"]).assign(
        covariance=np.nan
    )


EULER_CHECK = "euler_contributions_sum"


class EulerSums:
    """Observes each chunk's decomposition: per portfolio-day, the components' volatility
    contributions and the positions' component volatilities must each sum to the model
    volatility (relative tolerance 1e-6)."""

    def __init__(self) -> None:
        self.checked = 0
        self.failed = 0
        self.failing: list[str] = []
        self.days: set[str] = set()

    def __call__(self, result: decomposition.RiskDecomposition) -> None:
        ports, positions = result.portfolios, result.positions
        keys = ["trade_date", "portfolio_id"]
        totals = ports.groupby(keys)["total_vol_usd"].first()
        by_component = ports.groupby(keys)["vol_contribution_usd"].sum(min_count=1)
        by_position = positions.groupby(keys)["component_vol_usd"].sum(min_count=1)
        frame = pd.DataFrame(
            {"total": totals, "components": by_component, "positions": by_position}
        ).dropna(subset=["total"])
        tolerance = EULER_TOLERANCE * np.maximum(frame["total"].abs(), 1.0)
        bad = ~((frame["components"] - frame["total"]).abs() <= tolerance) | ~(
            (frame["positions"] - frame["total"]).abs() <= tolerance
        )
        self.checked += len(frame)
        self.failed += int(bad.sum())
        room = SHOWN_KEYS - len(self.failing)  # the first few keys, not every chunk's
        for day, portfolio_id in frame.index[bad.to_numpy()][: max(room, 0)]:
            self.failing.append(f"trade_date={day:%Y-%m-%d}, portfolio_id={portfolio_id}")
        if len(frame):
            dates = frame.index.get_level_values("trade_date")
            self.days.update({f"{dates.min():%Y-%m-%d}", f"{dates.max():%Y-%m-%d}"})

    def result(self) -> AssetCheckResult:
        return AssetCheckResult(
            check_name=EULER_CHECK,
            asset_key="portfolio_risk_decomposition",
            passed=self.failed == 0,
            metadata=check_metadata(self.checked, self.failed, self.failing, self.days),
        )


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    op_tags=START_EARLY,
    check_specs=[
        schema_check_spec("portfolio_risk_decomposition"),
        companion_check_spec("portfolio_risk_decomposition", "position_risk_contributions"),
        AssetCheckSpec(
            EULER_CHECK,
            asset="portfolio_risk_decomposition",
            blocking=True,
            description=(
                "Euler: per portfolio-day, the factor and specific volatility contributions "
                "and the positions' component volatilities each sum to the model volatility"
            ),
        ),
    ],
)
def portfolio_risk_decomposition(
    context: AssetExecutionContext,
    position_values: TableReader,
    position_greeks: TableReader,
    factor_betas: TableReader,
    specific_risk: TableReader,
    database: PostgresResource,
):
    """Per portfolio and day, annualized: variance = x' S_f x + sum e_i^2 s_i on the dollar
    exposures e per underlying (options delta-adjusted), x = B'e, split into one component per
    factor (x_k (S_f x)_k) and `specific`, with each component's share of variance and
    volatility contribution (they sum to the model volatility). Also writes
    position_risk_contributions (same transaction): each position's marginal and component
    volatility (Euler: they sum to the portfolio's volatility) and its share of risk."""
    url = database.url()
    days = partition_days(context)
    scope = run_scope(context)
    covariance = query_frame(
        url,
        sql.SQL(
            "SELECT trade_date, factor_a, factor_b, covariance FROM sigmasight.factor_covariance "
            "WHERE trade_date BETWEEN {} AND {}"
        ).format(sql.Literal(days[0].date()), sql.Literal(days[-1].date())),
    )
    euler = EulerSums()

    def chunks():
        betas = UnderlyingRows(factor_betas, BETA_COLUMNS, scope).frame
        variances = UnderlyingRows(
            specific_risk, ["trade_date", "symbol", "specific_variance"], scope
        ).frame
        # The model's betas, specific variances and covariances arranged once for every chunk.
        model = decomposition.risk_model(
            _or_unknown_betas(betas, days),
            _or_unknown_covariance(covariance, days),
            variances,
        )
        del betas, variances
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            exposures = on_underlyings(
                read_risk_rows(
                    url, ids, position_values, position_greeks, run_id=context.run.run_id
                )
            ).dropna(subset=["underlying"])
            if exposures.empty:
                continue
            result = decomposition.decompose(exposures, model)
            euler(result)
            yield CompanionRows(
                "position_risk_contributions", result.positions.drop(columns="underlying")
            )
            yield result.portfolios

    validator = TableValidator("portfolio_risk_decomposition")
    contributions = companion_validator(
        "portfolio_risk_decomposition", "position_risk_contributions"
    )
    replace = scope.portfolio_filter()
    yield Output(
        TableWrite(
            chunks(),
            replace=replace,
            observers=[validator],
            companions={"position_risk_contributions": replace},
            companion_observers={"position_risk_contributions": [contributions]},
        )
    )
    yield validator.result()
    yield contributions.result()
    yield euler.result()
