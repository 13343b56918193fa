"""What every asset module shares: the partitions, the backfill policy and position loading."""

from __future__ import annotations

import pandas as pd
import psycopg
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    TimeWindowPartitionMapping,
)

from sigmasight_pipeline import calendar
from sigmasight_pipeline.resources.io_manager import read_frame

TRADING_DAYS = calendar.trading_day_partitions()
SINGLE_RUN = BackfillPolicy.single_run()
PARTITIONED = {"partition_expr": "trade_date"}

positions_spec = AssetSpec(
    key=AssetKey("positions"),
    description=(
        "Portfolio positions (sigmasight.positions), written by CSV intake (`sigmasight ingest`, "
        "the inbox sensor, `sigmasight demo`), not computed here."
    ),
    group_name="portfolio",
    kinds={"postgres"},
)

POSITION_COLUMNS = (
    "id, portfolio_id, symbol, quantity, entry_price, entry_date, position_type, underlying, "
    "option_right, strike, expiry, multiplier"
)


def load_positions(
    conn: psycopg.Connection, portfolio_ids: list[int] | None = None
) -> pd.DataFrame:
    """Positions (all portfolios, or the ones given); entry_date and expiry as datetime64."""
    query = f"SELECT {POSITION_COLUMNS} FROM sigmasight.positions"
    if portfolio_ids is not None:
        return read_frame(
            conn, query + " WHERE portfolio_id = ANY(%s) ORDER BY id", (portfolio_ids,)
        )
    return read_frame(conn, query + " ORDER BY id")


def partition_days(context: AssetExecutionContext) -> pd.DatetimeIndex:
    """The sessions of the partitions this run materializes."""
    return pd.DatetimeIndex(pd.to_datetime(context.partition_keys))


def sessions_with_lookback(days: pd.DatetimeIndex, lookback: int) -> pd.DatetimeIndex:
    """`lookback` sessions before days[0], then every session up to days[-1]."""
    before = calendar.previous_sessions(days[0], lookback) if lookback else pd.DatetimeIndex([])
    return before.append(calendar.sessions(days[0], days[-1]))


def lookback(sessions: int) -> TimeWindowPartitionMapping:
    """The partitions of the run plus `sessions` trading days before them."""
    return TimeWindowPartitionMapping(
        start_offset=-sessions, allow_nonexistent_upstream_partitions=True
    )
