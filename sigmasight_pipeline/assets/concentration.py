"""Concentration (HHI, effective N, top names) and sector exposures against the S&P 500 sector
weights, per portfolio and day (chunks of portfolios)."""

import pandas as pd
from dagster import AssetExecutionContext, Output, asset

from sigmasight_pipeline.analytics import concentration, sectors
from sigmasight_pipeline.assets.common import (
    PARTITIONED,
    SINGLE_RUN,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    on_underlyings,
    portfolio_chunks,
    read_risk_rows,
    run_scope,
)
from sigmasight_pipeline.checks import TableValidator, schema_check_spec
from sigmasight_pipeline.resources.database import PostgresResource
from sigmasight_pipeline.resources.io_manager import TableReader, TableWrite
from sigmasight_pipeline.settings import benchmark_sector_file

RISK_GROUP = "risk"


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("portfolio_concentration")],
)
def portfolio_concentration(
    context: AssetExecutionContext,
    position_values: TableReader,
    position_greeks: TableReader,
    database: PostgresResource,
):
    """Per portfolio and day: the HHI of gross-exposure weights by name (exposures netted per
    underlying, options at delta-adjusted exposure), effective N = 1 / HHI, the top-5 and
    top-10 weights and the largest name."""
    url = database.url()
    scope = run_scope(context)

    def chunks():
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            rows = read_risk_rows(
                url, ids, position_values, position_greeks, run_id=context.run.run_id
            )
            yield concentration.portfolio_concentration(on_underlyings(rows))

    validator = TableValidator("portfolio_concentration")
    yield Output(TableWrite(chunks(), replace=scope.portfolio_filter(), observers=[validator]))
    yield validator.result()


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=RISK_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    check_specs=[schema_check_spec("portfolio_sector_exposures")],
)
def portfolio_sector_exposures(
    context: AssetExecutionContext,
    position_values: TableReader,
    position_greeks: TableReader,
    securities: pd.DataFrame,
    database: PostgresResource,
):
    """Per portfolio, day and GICS sector: long, short, gross and net exposure (options on
    their underlying at delta-adjusted exposure), weights of gross and of net, the S&P 500
    sector weight (the dated file data/benchmark_sector_weights.csv, or the one
    SIGMASIGHT_BENCHMARK_SECTOR_WEIGHTS names) and the active weight (net minus benchmark).
    Names without a known sector are Unclassified."""
    url = database.url()
    scope = run_scope(context)
    path = benchmark_sector_file()
    benchmark = sectors.load_benchmark_sector_weights(path)
    symbol_sectors = securities[["symbol", "sector"]]

    def chunks():
        for ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            rows = read_risk_rows(
                url, ids, position_values, position_greeks, run_id=context.run.run_id
            )
            yield sectors.portfolio_sector_exposures(
                on_underlyings(rows), symbol_sectors, benchmark
            )

    validator = TableValidator("portfolio_sector_exposures")
    yield Output(
        TableWrite(chunks(), replace=scope.portfolio_filter(), observers=[validator]),
        metadata={
            "benchmark_file": str(path),
            "benchmark_as_of": f"{benchmark['as_of'].max():%Y-%m-%d}",
        },
    )
    yield validator.result()
