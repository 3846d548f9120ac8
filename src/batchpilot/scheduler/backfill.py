"""The slots a backfill replays: a schedule's slots in a range of dates, or fixed steps.

``--start 2024-01-01 --end 2024-01-31`` covers both whole days in the
schedule's time zone (``--end`` is inclusive, as a person reads a range of
dates); a date-time bound is an exact instant, also inclusive. A backfill
replays the range it is given: the schedule's own ``start_date``/``end_date``
do not cut it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from batchpilot.errors import SlotRangeError
from batchpilot.scheduler.slots import Slot, slots_between
from batchpilot.spec.local_time import resolve_wall_time, start_of_local_day
from batchpilot.spec.schedule import ScheduleSpec

#: A backfill of more slots than this is refused (narrow the range or lengthen --every).
MAX_BACKFILL_SLOTS = 100_000
_DAY = timedelta(days=1)


def backfill_slots(
    schedule: ScheduleSpec | None,
    start: date | datetime,
    end: date | datetime,
    *,
    every: timedelta | None = None,
    reverse: bool = False,
    limit: int = MAX_BACKFILL_SLOTS,
) -> list[Slot]:
    """The slots to replay from ``start`` to ``end`` (both inclusive), oldest first, or
    newest first with ``reverse``.

    With ``every`` (``--every 1d``), fixed steps from ``start`` replace the
    schedule's cron: whole days step through local days (a daily slot stays at
    its local time across DST), other durations step in UTC. Without a schedule,
    ``every`` is required and the zone is UTC.

    Raises :class:`SlotRangeError` when ``end`` is before ``start``, when the
    range holds no slot or more than ``limit``, or when there is neither a
    schedule nor ``every``.
    """
    start_text, end_text = _text(start), _text(end)
    timezone = schedule.timezone if schedule is not None else "UTC"
    zone = ZoneInfo(timezone)
    low, high = _lower_bound(start, zone), _upper_bound(end, zone)
    if high <= low:
        raise SlotRangeError(
            f"the backfill range ends ({end_text}) before it starts ({start_text})",
            start=start_text,
            end=end_text,
        )
    if every is not None:
        slots = _fixed_steps(start, high, every, timezone, limit, start_text, end_text)
        described = f"every {_duration_text(every)}"
    elif schedule is not None:
        slots = slots_between(schedule, low, high, limit=limit + 1)
        described = f"schedule '{schedule.expression}' ({timezone})"
    else:
        raise SlotRangeError(
            "the pipeline has no schedule: give the step between slots (e.g. --every 1d)",
            start=start_text,
            end=end_text,
        )
    if not slots:
        raise SlotRangeError(
            f"no slot of {described} falls between {start_text} and {end_text}",
            start=start_text,
            end=end_text,
        )
    if len(slots) > limit:
        raise SlotRangeError(
            f"{start_text} to {end_text} holds more than {limit} slots of {described}: "
            "narrow the range",
            start=start_text,
            end=end_text,
        )
    return slots[::-1] if reverse else slots


def _fixed_steps(
    start: date | datetime,
    high: datetime,
    every: timedelta,
    timezone: str,
    limit: int,
    start_text: str,
    end_text: str,
) -> list[Slot]:
    if every <= timedelta():
        raise SlotRangeError(
            f"the step between slots must be positive, got {_duration_text(every)}",
            start=start_text,
            end=end_text,
        )
    zone = ZoneInfo(timezone)
    low = _lower_bound(start, zone)
    first_wall = _wall(start, zone)
    whole_days = every % _DAY == timedelta()
    slots: list[Slot] = []
    for index in range(limit + 1):
        if whole_days:  # the same local time each day, whatever DST does
            instant = resolve_wall_time(first_wall + every * index, zone)
        else:
            instant = low + every * index
        if instant >= high:
            break
        if not slots or instant > slots[-1].at:
            slots.append(Slot(instant, timezone))
    return slots


def _wall(value: date | datetime, zone: ZoneInfo) -> datetime:
    """The local wall time a bound names."""
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
    return datetime.combine(value, time())


def _lower_bound(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return resolve_wall_time(value, zone)
        return value.astimezone(UTC)
    return start_of_local_day(value, zone)


def _upper_bound(value: date | datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the inclusive end of the range."""
    if isinstance(value, datetime):
        return _lower_bound(value, zone) + timedelta(microseconds=1)
    return start_of_local_day(value + _DAY, zone)


def _text(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes" if not value.second else "seconds")
    return value.isoformat()


def _duration_text(every: timedelta) -> str:
    seconds = every.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


__all__ = ["MAX_BACKFILL_SLOTS", "backfill_slots"]
