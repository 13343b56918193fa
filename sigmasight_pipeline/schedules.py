"""Schedules: each trading day after the close, and a weekly 90-session backfill."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from sigmasight_pipeline import calendar
from sigmasight_pipeline.assets.common import positions_spec
from sigmasight_pipeline.runs import BackfillPlan, range_tags

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
    """Trading day D at 18:00 New York, after the close; skipped on exchange holidays."""
    day = context.scheduled_execution_time.date()
    if not calendar.is_session(day):
        return SkipReason(f"{day} is not an NYSE trading day")
    key = day.isoformat()
    return RunRequest(run_key=f"daily-{key}", partition_key=key)


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
