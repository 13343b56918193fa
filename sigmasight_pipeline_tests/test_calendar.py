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
        # Weekday morning: today's session is open, the newest partition is yesterday's.
        ("2026-12-01 05:51", "2026-11-30"),
        ("2026-12-01 16:29", "2026-11-30"),  # EST: the close + 30 minutes not yet passed
        ("2026-12-01 16:31", "2026-12-01"),  # weekday evening (EST)
        ("2026-07-01 17:29", "2026-06-30"),  # EDT: the partition appears at 17:30 New York
        ("2026-07-01 17:31", "2026-07-01"),
        ("2026-11-20 18:00", "2026-11-20"),  # Friday evening: Friday is materializable
        ("2026-11-21 10:00", "2026-11-20"),  # Saturday
        ("2026-11-22 23:59", "2026-11-20"),  # Sunday night
        ("2026-11-23 09:30", "2026-11-20"),  # Monday at the open
        ("2026-11-25 20:00", "2026-11-25"),  # the day before a holiday (Thanksgiving), evening
        ("2026-11-26 19:00", "2026-11-25"),  # Thanksgiving evening: no new partition
        ("2026-11-27 10:00", "2026-11-25"),  # the day after (half day, closes 13:00), morning
        ("2026-11-27 18:00", "2026-11-27"),  # the day after, evening
        ("2026-12-24 20:00", "2026-12-24"),  # Christmas Eve (half day), evening
        ("2026-12-25 20:00", "2026-12-24"),  # Christmas
    ],
)
def test_newest_partition_is_the_latest_closed_session(partitions, now, last):
    current = datetime.fromisoformat(now).replace(tzinfo=NY)
    assert partitions.get_partition_keys(current_time=current)[-1] == last
    assert calendar.latest_closed_session(current).strftime("%Y-%m-%d") == last


def test_partition_windows_cover_their_session_as_dates(partitions):
    """The IO manager replaces trade_date >= start date and < end date of a key range."""
    friday = partitions.time_window_for_partition_key("2026-11-27")
    assert (friday.start.strftime("%Y-%m-%d"), friday.end.strftime("%Y-%m-%d")) == (
        "2026-11-27",
        "2026-11-28",
    )
    assert friday.start.astimezone(NY) == datetime(2026, 11, 26, 16, 30, tzinfo=NY)
    wednesday = partitions.time_window_for_partition_key("2026-11-25")
    assert wednesday.end.strftime("%Y-%m-%d") == "2026-11-26"


def test_daily_schedule_runs_trading_days_and_skips_holidays(db_url, monkeypatch):
    from dagster import RunRequest, SkipReason, build_schedule_context

    monkeypatch.setenv("DATABASE_URL", db_url)  # the schedule reads price_issues

    friday = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 18, tzinfo=NY))
    request = daily_after_close(friday)
    assert isinstance(request, RunRequest) and request.partition_key == "2026-11-20"
    holiday = build_schedule_context(scheduled_execution_time=datetime(2026, 11, 26, 18, tzinfo=NY))
    assert isinstance(daily_after_close(holiday), SkipReason)
