"""Opening hours: is a schedule open at a given instant? Pure: the instant is passed in.

Hours are local wall-clock times in the schedule's zone, so "18:00-22:00" means 18:00 on the
clock on the wall on both sides of a DST change. An instant is converted to wall time first;
in the autumn the hour 02:00-03:00 happens twice and is judged by its wall time both times,
in the spring it does not exist (a range starting then opens at 03:00).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from ivr.model import MINUTES_PER_DAY, DayHours, Schedule

__all__ = ["is_open", "local_time"]


def local_time(schedule: Schedule, at: datetime) -> datetime:
    """`at` as wall time in the schedule's zone; a naive `at` is taken to be wall time already."""
    if at.tzinfo is None:
        return at.replace(tzinfo=schedule.timezone)
    return at.astimezone(schedule.timezone)


def is_open(schedule: Schedule, at: datetime) -> bool:
    """Whether `schedule` is open at instant `at`.

    Today's ranges count from their start to midnight (or their end); yesterday's ranges
    that run past midnight count from 00:00 to their end. Exceptions replace the hours of
    the date they are on, including the part of that date's ranges after midnight.
    """
    local = local_time(schedule, at)
    today: date = local.date()
    minute = local.hour * 60 + local.minute
    for r in schedule.hours_on(today).ranges:
        end = MINUTES_PER_DAY if r.crosses_midnight else r.end
        if r.start <= minute < end:
            return True
    yesterday: DayHours = schedule.hours_on(today - timedelta(days=1))
    return any(r.crosses_midnight and minute < r.end for r in yesterday.ranges)
