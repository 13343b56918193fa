"""Schedules: each trading day after the close, and a weekly 90-session backfill."""

from __future__ import annotations

import pandas as pd
from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)
from psycopg import sql

from sigmasight_pipeline import calendar
from sigmasight_pipeline.assets.common import positions_spec
from sigmasight_pipeline.resources.database import database_url
from sigmasight_pipeline.resources.tables import query_frame
from sigmasight_pipeline.runs import BackfillPlan, range_tags

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
    """Saturday 06:00: the last 90 sessions and their 61-session lookback, as ONE run
    (prices already stored are not fetched again, so this mostly recomputes analytics)."""
    plan = BackfillPlan.ending(calendar.latest_closed_session(context.scheduled_execution_time))
    start, last = plan.key(plan.history[0]), plan.key(plan.window[-1])
    return RunRequest(run_key=f"backfill-{last}", tags=range_tags(start, last))
