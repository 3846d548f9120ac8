"""Where a cron's slots fall in time, in a time zone, across DST changes.

Two kinds of cron, told apart by the hour field:

- **fixed-time** (``0 2 * * *``, ``30 1,13 * * 1-5``, ``*/10 9-17 * * *``): the
  minute and hour name local wall times. Each matching local day has each of
  them once: a time inside the spring-forward gap runs at the first valid
  instant after it (the instant the clocks jumped), a time inside the repeated
  fall-back hour runs once, at its first occurrence. Wall times that land on the
  same instant (02:00 and 02:30 inside one gap) are one slot.
- **interval** (hour field ``*``, ``*/n`` or ``0-23/n``: ``*/15 * * * *``,
  ``0 */4 * * *``, ``@hourly``): the minute and hour are read on the zone's
  *standard* time, a fixed UTC offset, so the spacing in UTC stays even across
  DST changes (in summer ``0 */4`` in Paris runs at 01:00, 05:00, … CEST); the day
  fields are still read on the local calendar.

Every function here returns UTC instants and never raises: past the ends of the
datetime range, or for a cron with no further date, it returns None.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TypeVar

from croniter import CroniterError

from batchpilot.scheduler.cron import CronFields, cron_fields
from batchpilot.spec.local_time import (
    local_wall_time,
    resolve_wall_time,
    standard_offset,
    start_of_local_day,
)

_MAX_STEPS = 4000
_SECOND = timedelta(seconds=1)
_T = TypeVar("_T")


def next_instant(cron: str, zone: tzinfo, after: datetime) -> datetime | None:
    """The first slot of ``cron`` in ``zone`` strictly after the aware instant ``after``."""
    fields = cron_fields(cron)
    if fields.hour_is_interval:
        return _never_raising(lambda: _next_interval(fields, zone, after))
    return _never_raising(lambda: _next_fixed(fields, zone, after))


def latest_instant(cron: str, zone: tzinfo, at: datetime) -> datetime | None:
    """The last slot of ``cron`` in ``zone`` at or before the aware instant ``at``."""
    fields = cron_fields(cron)
    if fields.hour_is_interval:
        return _never_raising(lambda: _latest_interval(fields, zone, at))
    return _never_raising(lambda: _latest_fixed(fields, zone, at))


def _never_raising(compute: Callable[[], _T]) -> _T | None:
    try:
        return compute()
    except (OverflowError, ValueError, CroniterError):
        return None  # beyond year 9999 / before year 1: there is no slot to run


def _next_fixed(fields: CronFields, zone: tzinfo, after: datetime) -> datetime | None:
    # A wall time before ``after``'s own resolves no later than ``after`` (resolution is
    # monotonic), so the search starts at after's wall time.
    wall: datetime | None = local_wall_time(after, zone)
    for _ in range(_MAX_STEPS):
        assert wall is not None
        wall = fields.next_wall(wall)
        if wall is None:
            return None
        instant = resolve_wall_time(wall, zone)
        if instant > after:
            return instant
    return None


def _latest_fixed(fields: CronFields, zone: tzinfo, at: datetime) -> datetime | None:
    local = at.astimezone(zone)
    wall: datetime | None = local.replace(tzinfo=None)
    if local.fold:  # in the second pass of a repeated hour: later wall times ran already
        wall = wall + (_utc_offset(local.replace(fold=0)) - _utc_offset(local))
    for _ in range(_MAX_STEPS):
        assert wall is not None
        wall = fields.previous_wall(wall)
        if wall is None:
            return None
        instant = resolve_wall_time(wall, zone)
        if instant <= at:
            return instant
        wall -= timedelta(microseconds=1)
    return None


def _next_interval(fields: CronFields, zone: tzinfo, after: datetime) -> datetime | None:
    cursor = after
    for _ in range(_MAX_STEPS):
        offset = standard_offset(cursor, zone)
        grid = fields.next_wall(_naive(cursor + offset), any_day=True)
        if grid is None:
            return None
        instant = (grid - offset).replace(tzinfo=UTC)  # after cursor, so after ``after``
        day = instant.astimezone(zone).date()
        if fields.day_matches(day):
            return instant
        next_day = fields.next_day(day, include=False)
        if next_day is None:
            return None
        cursor = max(after, start_of_local_day(next_day, zone) - _SECOND)
    return None


def _latest_interval(fields: CronFields, zone: tzinfo, at: datetime) -> datetime | None:
    cursor = at
    for _ in range(_MAX_STEPS):
        offset = standard_offset(cursor, zone)
        grid = fields.previous_wall(_naive(cursor + offset), any_day=True)
        if grid is None:
            return None
        instant = (grid - offset).replace(tzinfo=UTC)  # at or before cursor, so before ``at``
        day = instant.astimezone(zone).date()
        if fields.day_matches(day):
            return instant
        previous_day = fields.previous_day(day, include=False)
        if previous_day is None:
            return None
        cursor = min(at, start_of_local_day(previous_day + timedelta(days=1), zone) - _SECOND)
    return None


def _utc_offset(local: datetime) -> timedelta:
    return local.utcoffset() or timedelta()


def _naive(instant: datetime) -> datetime:
    return instant.replace(tzinfo=None)


__all__ = ["latest_instant", "next_instant"]
