"""Trading-day partitions against the XNYS calendar."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pytest

from sigmasight_pipeline import calendar
from sigmasight_pipeline.schedules import daily_after_close

NY = ZoneInfo(calendar.TIMEZONE)


@pytest.fixture(scope="module")
def partitions():
    return calendar.trading_day_partitions("2015-01-02")


def test_partition_keys_are_the_xnys_sessions_2015_to_2026(partitions):
    keys = partitions.get_partition_keys(current_time=datetime(2026, 12, 31, 20, tzinfo=NY))
    xnys = xcals.get_calendar("XNYS", start="2015-01-01", end="2026-12-31")
    expected = [d.strftime("%Y-%m-%d") for d in xnys.sessions_in_range("2015-01-02", "2026-12-31")]
    assert keys == expected


@pytest.mark.parametrize(
    ("day", "present"),
    [("2025-01-09", False), ("2025-12-25", False), ("2025-11-28", True), ("2025-11-29", False)],
)
def test_known_days(partitions, day, present):
    keys = set(partitions.get_partition_keys(current_time=datetime(2026, 1, 5, tzinfo=NY)))
    assert (day in keys) is present


@pytest.mark.parametrize(
    ("now", "last"),
    [
        ("2026-11-20 18:00", "2026-11-20"),  # Friday evening: Friday is materializable
        ("2026-11-21 10:00", "2026-11-20"),  # Saturday
        ("2026-11-23 18:30", "2026-11-23"),  # Monday evening
        # On an exchange holiday end_offset=1 already lists the next session (a known quirk
        # of one-partition-ahead; the daily schedule skips holidays, so nothing runs early).
        ("2026-11-26 19:00", "2026-11-27"),
    ],
)
def test_day_d_is_available_on_the_evening_of_d(partitions, now, last):
    current = datetime.fromisoformat(now).replace(tzinfo=NY)
    assert partitions.get_partition_keys(current_time=current)[-1] == last


def test_latest_closed_session():
    assert (
        calendar.latest_closed_session(datetime(2026, 11, 20, 17, tzinfo=NY)).strftime("%Y-%m-%d")
        == "2026-11-20"
    )
    assert (
        calendar.latest_closed_session(datetime(2026, 11, 20, 15, tzinfo=NY)).strftime("%Y-%m-%d")
        == "2026-11-19"
    )
    assert (
        calendar.latest_closed_session(datetime(2026, 11, 22, 12, tzinfo=NY)).strftime("%Y-%m-%d")
        == "2026-11-20"
    )


def test_daily_schedule_runs_trading_days_and_skips_holidays():
    from dagster import RunRequest, SkipReason, build_schedule_context

    friday = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 18, tzinfo=NY))
    request = daily_after_close(friday)
    assert isinstance(request, RunRequest) and request.partition_key == "2026-11-20"
    holiday = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 26, 18, tzinfo=NY))
    assert isinstance(daily_after_close(holiday), SkipReason)
