"""NYSE trading days (exchange-calendars XNYS) and the daily partitions built on them."""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import cache

import exchange_calendars as xcals
import pandas as pd
from dagster import TimeWindowPartitionsDefinition

TIMEZONE = "America/New_York"
DEFAULT_START = "2015-01-02"
# Far enough ahead that "today" is always inside the calendar the partitions are built from.
CALENDAR_END = "2030-12-31"


def partitions_start() -> str:
    """First partition key; `SIGMASIGHT_PARTITIONS_START` overrides the default."""
    return os.environ.get("SIGMASIGHT_PARTITIONS_START", DEFAULT_START)


@cache
def _xnys() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start="2005-01-01", end=CALENDAR_END)


def sessions(start: str | date, end: str | date) -> pd.DatetimeIndex:
    """NYSE sessions from start to end, both included, as naive midnight timestamps."""
    return _xnys().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))


def is_session(day: str | date) -> bool:
    return bool(_xnys().is_session(pd.Timestamp(day)))


def previous_sessions(day: str | date, count: int) -> pd.DatetimeIndex:
    """The `count` sessions strictly before `day`, oldest first."""
    cal = _xnys()
    ts = pd.Timestamp(day)
    last = cal.date_to_session(ts, direction="previous")
    if last == ts:
        last = cal.previous_session(last)
    return cal.sessions_window(last, -count)


def last_sessions(end: str | date, count: int) -> pd.DatetimeIndex:
    """The `count` sessions ending at the last session on or before `end`, oldest first."""
    cal = _xnys()
    last = cal.date_to_session(pd.Timestamp(end), direction="previous")
    return cal.sessions_window(last, -count)


def latest_closed_session(now: datetime | None = None) -> pd.Timestamp:
    """The most recent session whose close (16:00 New York) has passed at `now`."""
    now_ny = pd.Timestamp.now(tz=TIMEZONE) if now is None else pd.Timestamp(now)
    now_ny = now_ny.tz_localize(TIMEZONE) if now_ny.tzinfo is None else now_ny.tz_convert(TIMEZONE)
    today = pd.Timestamp(now_ny.date())
    cal = _xnys()
    if cal.is_session(today) and now_ny.hour >= 16:
        return today
    return cal.date_to_session(today - pd.Timedelta(days=1), direction="previous")


def holidays(start: str | date, end: str | date) -> list[pd.Timestamp]:
    """Weekdays in [start, end] that are not NYSE sessions (exchange holidays)."""
    weekdays = pd.bdate_range(start, end)
    return list(weekdays.difference(sessions(start, end)))


@cache
def trading_day_partitions(start: str | None = None) -> TimeWindowPartitionsDefinition:
    """One partition per NYSE session, key YYYY-MM-DD, America/New_York.

    Weekends are excluded by the cron schedule and holidays by `exclusions`. `end_offset=1`
    makes the in-progress session available, so day D can be materialized on the evening of D
    (a Friday's window runs to Monday, so without it Friday would wait for the weekend).
    """
    start = start or partitions_start()
    excluded = [
        datetime.combine(d.date(), datetime.min.time()) for d in holidays(start, CALENDAR_END)
    ]
    return TimeWindowPartitionsDefinition(
        start=start,
        cron_schedule="0 0 * * 1-5",
        fmt="%Y-%m-%d",
        timezone=TIMEZONE,
        end_offset=1,
        exclusions=excluded,
    )
