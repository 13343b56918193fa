"""Correlations of each portfolio's underlyings over 90 sessions, their clusters, the average
pairwise correlation and the effective number of bets (chunks of portfolios; one matrix per
portfolio, never universe x universe)."""

import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, Output, asset

from sigmasight_pipeline.analytics import correlation, market
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    START_EARLY,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    UnderlyingRows,
    lookback,
    on_underlyings,
    partition_days,
    portfolio_chunks,
    read_risk_rows,
    run_scope,
    sessions_with_lookback,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import STORAGE_TABLE, TableReader, TableWrite

RISK_GROUP = "risk"
WINDOW = correlation.CORRELATION_WINDOW
MATRIX_COLUMNS = [
    "trade_date", "portfolio_id", "symbols", "correlations", "pair_obs", "cluster_ids",
    "avg_pairwise_correlation", "avg_pnl_correlation", "effective_number_of_bets", "n_clusters",
    "reason", "correlation_codes",
]  # fmt: skip
# What portfolio_correlation_matrices stores: the codes of the correlations (sql/0025), not the
# correlations the schema check reads.
STORED_MATRIX_COLUMNS = [c for c in MATRIX_COLUMNS if c != "correlations"]


def correlation_matrices(result: correlation.CorrelationResult) -> pd.DataFrame:
    """The rows of portfolio_correlation_matrices, with each row's correlations beside their
    codes: a symbol without a cluster (0) is NULL."""
    matrices = result.matrices
    cluster_ids = [np.where(ids == 0, np.nan, ids) for ids in matrices["cluster_ids"]]
    lengths = np.array([len(c) for c in matrices["correlations"]], dtype=np.int64)
    flat = (
        np.concatenate([np.asarray(c, dtype=float) for c in matrices["correlations"]])
        if len(lengths)
        else np.zeros(0)
    )
    codes = correlation.correlation_codes(flat)
    offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
    items = pa.array(codes.data, mask=np.ma.getmaskarray(codes), type=pa.int16())
    code_lists = pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(offsets, items))
    return matrices.assign(cluster_ids=cluster_ids, correlation_codes=code_lists)[MATRIX_COLUMNS]


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata={**PARTITIONED, STORAGE_TABLE: "portfolio_correlation_matrices"},
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas", "scipy"},
    retry_policy=TRANSIENT_RETRY,
    op_tags=START_EARLY,
    ins={"returns": AssetIn(partition_mapping=lookback(WINDOW - 1))},
    check_specs=[schema_check_spec("portfolio_correlations")],
)
def portfolio_correlations(
    context: AssetExecutionContext,
    position_values: TableReader,
    position_greeks: TableReader,
    returns: TableReader,
    database: PostgresResource,
):
    """Per portfolio and day: the 90-session Pearson correlations of its underlyings
    (pairwise-complete, at least 20 common sessions), clusters cut at |rho| >= 0.7 (scipy,
    complete linkage), the average pairwise correlation and the effective number of bets.
    Stored compactly (one row per portfolio-day in portfolio_correlation_matrices); the views
    portfolio_correlations and correlation_clusters give one row per pair and per symbol."""
    url = database.url()
    days = partition_days(context)
    sessions = pd.DatetimeIndex(sessions_with_lookback(days, WINDOW - 1), name="trade_date")
    scope = run_scope(context)

    def chunks():
        symbol_returns = UnderlyingRows(returns, ["symbol", "trade_date", "daily_return"], scope)
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            rows = read_risk_rows(
                url, ids, position_values, position_greeks, run_id=context.run.run_id
            )
            exposures = on_underlyings(rows).dropna(subset=["underlying"])
            underlyings = sorted(exposures["underlying"].unique())
            wide = market.returns_matrix(symbol_returns.of(underlyings)).reindex(sessions)
            result = correlation.portfolio_correlations(
                exposures.fillna({"exposure": 0.0}), wide, days
            )
            yield correlation_matrices(result)

    validator = TableValidator("portfolio_correlations")
    yield Output(
        TableWrite(
            chunks(),
            replace=scope.portfolio_filter(),
            columns=STORED_MATRIX_COLUMNS,
            observers=[validator],
        )
    )
    yield validator.result()
