"""NYSE trading days (exchange-calendars XNYS) and the daily partitions built on them."""

from __future__ import annotations

import os
from datetime import date, datetime, time
from functools import cache
from importlib import metadata

import numpy as np
import pandas as pd
from dagster import TimeWindowPartitionsDefinition, partition_loading_context

TIMEZONE = "America/New_York"
DEFAULT_START = "2015-01-02"
# Far enough ahead that "today" is always inside the calendar the partitions are built from.
CALENDAR_END = "2030-12-31"


def partitions_start() -> str:
    """First partition key; `SIGMASIGHT_PARTITIONS_START` overrides the default."""
    return os.environ.get("SIGMASIGHT_PARTITIONS_START", DEFAULT_START)


CALENDAR_START = "2005-01-01"


@cache
def _session_index() -> pd.DatetimeIndex:
    """Every XNYS session from CALENDAR_START to CALENDAR_END.

    exchange-calendars takes about 2 s to import and build XNYS, which every process that
    loads the code location (CLI, run workers, code server) would pay; the sessions are cached
    once per exchange-calendars version under SIGMASIGHT_HOME/cache, and read back in
    milliseconds.
    """
    from sigmasight_pipeline.resources.database import sigmasight_home

    version = metadata.version("exchange-calendars")
    path = sigmasight_home() / "cache" / f"xnys_{CALENDAR_START}_{CALENDAR_END}_{version}.npy"
    if path.exists():
        return pd.DatetimeIndex(np.load(path).astype("datetime64[ns]"))
    import exchange_calendars as xcals

    days = xcals.get_calendar("XNYS", start=CALENDAR_START, end=CALENDAR_END).sessions
    days = pd.DatetimeIndex(days.tz_localize(None) if days.tz else days).normalize()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.npy")
    np.save(partial, days.values.astype("datetime64[D]"))
    partial.replace(path)  # atomic: a concurrent reader sees the whole file or none
    return days


def sessions(start: str | date, end: str | date) -> pd.DatetimeIndex:
    """NYSE sessions from start to end, both included, as naive midnight timestamps."""
    index = _session_index()
    first = index.searchsorted(pd.Timestamp(start), side="left")
    last = index.searchsorted(pd.Timestamp(end), side="right")
    return index[first:last]


def is_session(day: str | date) -> bool:
    index = _session_index()
    ts = pd.Timestamp(day).normalize()
    pos = index.searchsorted(ts)
    return bool(pos < len(index) and index[pos] == ts)


def _window(last_position: int, count: int) -> pd.DatetimeIndex:
    if last_position < count - 1:
        raise ValueError(f"fewer than {count} sessions before the calendar's start")
    return _session_index()[last_position - count + 1 : last_position + 1]


def previous_sessions(day: str | date, count: int) -> pd.DatetimeIndex:
    """The `count` sessions strictly before `day`, oldest first."""
    position = _session_index().searchsorted(pd.Timestamp(day), side="left") - 1
    return _window(position, count)


def last_sessions(end: str | date, count: int) -> pd.DatetimeIndex:
    """The `count` sessions ending at the last session on or before `end`, oldest first."""
    position = _session_index().searchsorted(pd.Timestamp(end), side="right") - 1
    return _window(position, count)


def latest_closed_session(now: datetime | None = None) -> pd.Timestamp:
    """The newest session whose data can exist at `now` (default: now): the last partition key,
    so the CLI, the sensor and the UI's "Latest" agree (see `trading_day_partitions`)."""
    when = pd.Timestamp.now(tz="UTC").to_pydatetime() if now is None else _aware(now)
    with partition_loading_context(when):
        key = trading_day_partitions().get_last_partition_key()
    if key is None:
        raise ValueError(f"no trading-day partition exists yet at {now}")
    return pd.Timestamp(key)


def _aware(now: datetime) -> datetime:
    stamp = pd.Timestamp(now)
    return (stamp.tz_localize(TIMEZONE) if stamp.tzinfo is None else stamp).to_pydatetime()


def holidays(start: str | date, end: str | date) -> list[pd.Timestamp]:
    """Weekdays in [start, end] that are not NYSE sessions (exchange holidays)."""
    weekdays = pd.bdate_range(start, end)
    return list(weekdays.difference(sessions(start, end)))


# A session's partition appears once its close has passed with a buffer for end-of-day data:
# at 21:30 UTC, i.e. 16:30 New York in winter (EST) and 17:30 in summer (EDT).
PARTITION_TIMEZONE = "Asia/Dubai"  # UTC+4, no daylight saving time
SESSION_READY_CRON = "30 1 * * 1-6"  # 01:30 UTC+4 = 21:30 UTC the evening before
SATURDAY_CRON = "30 1 * * 6"


@cache
def trading_day_partitions(start: str | None = None) -> TimeWindowPartitionsDefinition:
    """One partition per NYSE session, key YYYY-MM-DD; session D's partition exists from
    21:30 UTC on D (16:30 New York in winter, 17:30 in summer), never earlier.

    Dagster names a time-window partition by its window's start and lists it once the window
    has ended (no end offset). For the key to be session D and the window to end just after
    D's close, the windows are laid out in UTC+4 (no daylight saving time), where 21:30 UTC on
    the evening before D is 01:30 on date D: D's window runs from the previous evening's
    21:30 UTC to D's 21:30 UTC. Saturday's window (Friday evening to Monday) is excluded, as
    is every exchange holiday's, so the keys are exactly the XNYS sessions, and on a holiday or
    a weekend the newest partition stays the last session that closed.
    """
    start = start or partitions_start()
    excluded: list[datetime | str] = [
        datetime.combine(d.date(), time(1, 30)) for d in holidays(start, CALENDAR_END)
    ]
    return TimeWindowPartitionsDefinition(
        start=start,
        cron_schedule=SESSION_READY_CRON,
        fmt="%Y-%m-%d",
        timezone=PARTITION_TIMEZONE,
        exclusions=[*excluded, SATURDAY_CRON],
    )
