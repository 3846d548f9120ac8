"""Wall-clock times in a time zone, resolved to instants without surprises at DST changes.

A local wall time can name no instant (inside a spring-forward gap) or two
(inside a fall-back repeated hour). :func:`resolve_wall_time` picks one, always:

- a time inside a gap becomes the first valid instant after it, which is the
  instant the clocks jumped (02:30 on the night Paris springs forward is 03:00 CEST);
- a time inside a repeated hour is its first occurrence (``fold=0``).

The mapping is monotonic: a later wall time never resolves to an earlier instant.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, tzinfo


def resolve_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """Return the UTC instant of the naive local ``wall`` time in ``zone`` (see module doc).

    Raises ``OverflowError`` only at the very ends of the datetime range.
    """
    wall = wall.replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 read the wall time with the offset before the jump, fold=1 with the
    # offset after it; the jump lies between the two readings.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _first_instant_with_offset_of(zone, min(first, other), max(first, other))


def _first_instant_with_offset_of(zone: tzinfo, low: datetime, high: datetime) -> datetime:
    """The first instant in (low, high] whose UTC offset is that of ``high`` (a bisection over
    whole seconds: zone transitions fall on whole seconds)."""
    target = high.astimezone(zone).utcoffset()
    low_s, high_s = math.floor(low.timestamp()), math.ceil(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        instant = datetime.fromtimestamp(middle, UTC)
        if instant.astimezone(zone).utcoffset() == target:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def local_wall_time(instant: datetime, zone: tzinfo) -> datetime:
    """The naive local wall time of an aware ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def start_of_local_day(day: date, zone: tzinfo) -> datetime:
    """The UTC instant the local ``day`` begins in ``zone`` (its first valid instant)."""
    return resolve_wall_time(datetime.combine(day, time()), zone)


def standard_offset(instant: datetime, zone: tzinfo) -> timedelta:
    """The zone's standard-time UTC offset at ``instant`` (its offset without DST).

    It is constant across DST changes and changes only when a zone moves for good.
    """
    local = instant.astimezone(zone)
    offset = local.utcoffset() or timedelta()
    return offset - (local.dst() or timedelta())


__all__ = [
    "local_wall_time",
    "resolve_wall_time",
    "standard_offset",
    "start_of_local_day",
]
