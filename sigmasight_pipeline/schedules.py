"""Schedules: each trading day after the close, and a weekly 90-session backfill (its market
run, then its portfolio runs by shard, requested by a run status sensor)."""

from __future__ import annotations

import pandas as pd
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    run_status_sensor,
    schedule,
)
from psycopg import sql

from sigmasight_pipeline import calendar
from sigmasight_pipeline.assets.common import positions_spec
from sigmasight_pipeline.resources.database import database_url
from sigmasight_pipeline.resources.tables import query_frame
from sigmasight_pipeline.runs import BackfillPlan, market_run, next_runs, range_tags
from sigmasight_pipeline.settings import shards

# The daily run also fetches again any of the previous sessions that were not yet published.
REFETCH_SESSIONS = 5

PIPELINE_ASSETS = AssetSelection.all() - AssetSelection.assets(positions_spec.key)

daily_update_job = define_asset_job(
    "daily_update",
    selection=PIPELINE_ASSETS,
    description="Every asset for one trading day (or a partition range, as one run).",
)


@schedule(
    job=daily_update_job,
    cron_schedule="0 18 * * 1-5",
    execution_timezone=calendar.TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
)
def daily_after_close(context: ScheduleEvaluationContext):
    """Trading day D at 18:00 New York, after the close; skipped on exchange holidays. Any of
    the 5 sessions before D that had no bars at all when it ran is run again with D."""
    day = context.scheduled_execution_time.date()
    if not calendar.is_session(day):
        return SkipReason(f"{day} is not an NYSE trading day")
    key = day.isoformat()
    unpublished = unpublished_sessions(database_url(), day)
    if unpublished:
        # Sessions the provider had not published when they ran are fetched again with today.
        first = unpublished[0]
        return RunRequest(run_key=f"daily-{key}-from-{first}", tags=range_tags(first, key))
    return RunRequest(run_key=f"daily-{key}", partition_key=key)


def unpublished_sessions(url: str, day, sessions: int = REFETCH_SESSIONS) -> list[str]:
    """The sessions among the `sessions` before `day` that had no bars at all when they ran."""
    recent = calendar.previous_sessions(day, sessions)
    frame = query_frame(
        url,
        sql.SQL(
            "SELECT DISTINCT trade_date FROM sigmasight.price_issues "
            "WHERE kind = 'not_published' AND trade_date BETWEEN {} AND {} ORDER BY 1"
        ).format(sql.Literal(recent[0].date()), sql.Literal(recent[-1].date())),
    )
    return [f"{d:%Y-%m-%d}" for d in pd.to_datetime(frame["trade_date"])]


@schedule(
    job=daily_update_job,
    cron_schedule="0 6 * * 6",
    execution_timezone=calendar.TIMEZONE,
    default_status=DefaultScheduleStatus.STOPPED,
)
def weekly_backfill(context: ScheduleEvaluationContext):
    """Saturday 06:00: the 90 sessions to the latest closed one, as `sigmasight backfill`
    does it: this requests the market run (over the window and its lookback; prices already
    stored are not fetched again), and `backfill_next_stage` requests the following runs as
    each stage succeeds (the portfolio runs: one, or one per shard of SIGMASIGHT_SHARDS, run in
    parallel by the run queue)."""
    plan = BackfillPlan.ending(calendar.latest_closed_session(context.scheduled_execution_time))
    run = market_run(plan, shards())
    return RunRequest(
        run_key=f"backfill-{run.end}",
        asset_selection=[AssetKey(a) for a in run.assets],
        tags=run.tags,
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    request_job=daily_update_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description=(
        "A backfill's next stage (runs.next_runs): after its market run, the symbol analytics "
        "and portfolio runs; after a sharded backfill's symbol run, one run per shard."
    ),
)
def backfill_next_stage(context: RunStatusSensorContext):
    """The runs that follow a backfill run that succeeded; run keys name that run, so each
    is requested once."""
    planned = next_runs(context.dagster_run.tags)
    if not planned:
        return SkipReason("not a backfill stage with a next one")
    return [
        RunRequest(
            run_key=f"{context.dagster_run.run_id}-{run.stage}-{i}",
            asset_selection=[AssetKey(a) for a in run.assets],
            tags=run.tags,
        )
        for i, run in enumerate(planned)
    ]
