"""A schedule's slots: the instants its runs are due, with their logical dates.

DST rules (proven by tests/scheduler/test_dst_properties.py over 10 years in
Europe/Paris, America/New_York and Australia/Lord_Howe):

=====================================  =============================================
cron                                   on a DST change
=====================================  =============================================
fixed time (``0 2 * * *``, ``@daily``)  runs exactly once per matching local day
  time inside the spring-forward gap   runs at the first valid instant after it
                                       (02:30 in Paris on 31 March 2024 → 03:00 CEST)
  time inside the repeated hour        runs once, at its first occurrence
interval (hour ``*``, ``*/n``:          even spacing in UTC: minute and hour are read
``*/15 * * * *``, ``0 */4 * * *``)      on the zone's standard time, days on the local
                                       calendar
any zone, any date                     never raises (no slot past year 9999: None)
=====================================  =============================================

A slot's logical date (``{{ ds }}``) is its date in the schedule's time zone.
``start_date`` and ``end_date`` bound the slots (both inclusive).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from batchpilot.scheduler.timeline import latest_instant, next_instant
from batchpilot.spec.schedule import ScheduleSpec

_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, order=True)
class Slot:
    """One due instant of a schedule: ``at`` (aware, UTC) is its identity."""

    at: datetime
    timezone: str = field(default="UTC", compare=False)

    @property
    def local(self) -> datetime:
        """The slot in the schedule's time zone."""
        return self.at.astimezone(ZoneInfo(self.timezone))

    @property
    def logical_date(self) -> date:
        """The slot's date in the schedule's time zone."""
        return self.local.date()

    @property
    def ds(self) -> str:
        """``{{ ds }}`` of the slot's run: its logical date as YYYY-MM-DD."""
        return self.logical_date.isoformat()


def next_slot(schedule: ScheduleSpec, after: datetime) -> Slot | None:
    """The first slot strictly after the aware instant ``after``, within the schedule's
    ``start_date``/``end_date``; None when there is no further slot."""
    if schedule.start_date is not None and after < schedule.start_date:
        after = schedule.start_date - _EPSILON
    instant = next_instant(schedule.cron, schedule.zone, _utc(after))
    if instant is None or (schedule.end_date is not None and instant > schedule.end_date):
        return None
    return Slot(instant, schedule.timezone)


def latest_slot(schedule: ScheduleSpec, at: datetime) -> Slot | None:
    """The last slot at or before the aware instant ``at`` (the latest due slot when ``at``
    is now), within the schedule's bounds; None when there is none."""
    if schedule.end_date is not None and at > schedule.end_date:
        at = schedule.end_date
    instant = latest_instant(schedule.cron, schedule.zone, _utc(at))
    if instant is None or (schedule.start_date is not None and instant < schedule.start_date):
        return None
    return Slot(instant, schedule.timezone)


def iter_slots(schedule: ScheduleSpec, after: datetime) -> Iterator[Slot]:
    """The slots strictly after ``after``, oldest first, while there are any."""
    slot = next_slot(schedule, after)
    while slot is not None:
        yield slot
        slot = next_slot(schedule, slot.at)


def slots_between(
    schedule: ScheduleSpec, start: datetime, end: datetime, *, limit: int | None = None
) -> list[Slot]:
    """The slots in ``[start, end)``, oldest first (at most ``limit`` of them)."""
    found: list[Slot] = []
    for slot in iter_slots(schedule, start - _EPSILON):
        if slot.at >= end or (limit is not None and len(found) >= limit):
            break
        found.append(slot)
    return found


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got the naive {instant.isoformat()}")
    return instant.astimezone(UTC)


__all__ = ["Slot", "iter_slots", "latest_slot", "next_slot", "slots_between"]
