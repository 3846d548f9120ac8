"""A cron expression read once into sets of minutes, hours and days.

croniter parses and checks the text; matching and stepping are done here on
plain sets, because croniter costs ~0.4 ms per step and its own handling of
time zones is not what :mod:`batchpilot.scheduler.timeline` promises.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

from croniter import croniter

#: Days searched for a matching date before giving up (a cron that fires on
#: 29 February waits up to 8 years; the spec refuses crons that never fire).
MAX_DAYS_BETWEEN_MATCHES = 366 * 9


@dataclass(frozen=True)
class CronFields:
    """The expanded fields of a 5-field cron.

    ``days``/``weekdays`` are None when that field is ``*``; ``last_day`` is an
    ``L`` in the day-of-month list; ``exotic`` marks the rarer day syntax
    (``15W``, ``L-2``, ``1#2``), matched through croniter (~1 ms a day).
    """

    expression: str
    times: tuple[time, ...]
    days: frozenset[int] | None
    last_day: bool
    months: frozenset[int]
    weekdays: frozenset[int] | None
    exotic: bool
    hour_is_interval: bool

    def day_matches(self, day: date) -> bool:
        """Whether the cron fires on ``day`` (a calendar date, in whatever zone it is read)."""
        if self.exotic:
            return _exotic_day_matches(self.expression, day)
        if day.month not in self.months:
            return False
        by_date = self.days is None or day.day in self.days or (self.last_day and _is_last(day))
        by_weekday = self.weekdays is None or day.isoweekday() % 7 in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return by_date or by_weekday  # cron's rule: both restricted means either
        return by_date and by_weekday

    def next_day(self, day: date, *, include: bool) -> date | None:
        """The first matching day on or after ``day`` (after, unless ``include``)."""
        current = day if include else day + timedelta(days=1)
        for _ in range(MAX_DAYS_BETWEEN_MATCHES):
            if self.day_matches(current):
                return current
            current += timedelta(days=1)
        return None

    def previous_day(self, day: date, *, include: bool) -> date | None:
        """The last matching day on or before ``day`` (before, unless ``include``)."""
        current = day if include else day - timedelta(days=1)
        for _ in range(MAX_DAYS_BETWEEN_MATCHES):
            if self.day_matches(current):
                return current
            current -= timedelta(days=1)
        return None

    def next_time(self, moment: time) -> time | None:
        """The first time of day strictly after ``moment``, or None."""
        index = bisect.bisect_right(self.times, moment)
        return self.times[index] if index < len(self.times) else None

    def last_time(self, moment: time) -> time | None:
        """The last time of day at or before ``moment``, or None."""
        index = bisect.bisect_right(self.times, moment)
        return self.times[index - 1] if index else None

    def next_wall(self, wall: datetime, *, any_day: bool = False) -> datetime | None:
        """The first matching wall time strictly after the naive ``wall`` (days ignored with
        ``any_day``)."""
        moment = self.next_time(wall.time())
        if moment is not None and (any_day or self.day_matches(wall.date())):
            return datetime.combine(wall.date(), moment)
        day = (
            wall.date() + timedelta(days=1)
            if any_day
            else self.next_day(wall.date(), include=False)
        )
        return None if day is None else datetime.combine(day, self.times[0])

    def previous_wall(self, wall: datetime, *, any_day: bool = False) -> datetime | None:
        """The last matching wall time at or before the naive ``wall``."""
        moment = self.last_time(wall.time())
        if moment is not None and (any_day or self.day_matches(wall.date())):
            return datetime.combine(wall.date(), moment)
        day = (
            wall.date() - timedelta(days=1)
            if any_day
            else self.previous_day(wall.date(), include=False)
        )
        return None if day is None else datetime.combine(day, self.times[-1])


@lru_cache(maxsize=4096)
def cron_fields(expression: str) -> CronFields:
    """Read a checked 5-field cron (see :func:`batchpilot.spec.schedule.parse_schedule`).

    Raises croniter's errors for text the spec layer would have refused.
    """
    parts = expression.split()
    expanded, _nth = croniter.expand(expression)
    minutes = [int(m) for m in expanded[0]] if expanded[0] != ["*"] else list(range(60))
    hours = [int(h) for h in expanded[1]] if expanded[1] != ["*"] else list(range(24))
    months = range(1, 13) if expanded[3] == ["*"] else (int(m) for m in expanded[3])
    day_tokens, weekday_text = parts[2].upper().split(","), parts[4].upper()
    last_day = "L" in day_tokens
    exotic = any(("L" in t or "W" in t) and t != "L" for t in day_tokens) or any(
        mark in weekday_text for mark in "#L"
    )
    if not exotic and last_day:
        expanded[2] = [d for d in expanded[2] if d != "l"]
    return CronFields(
        expression=expression,
        times=tuple(time(h, m) for h in sorted(hours) for m in sorted(minutes)),
        days=(None if exotic or expanded[2] == ["*"] else frozenset(int(d) for d in expanded[2])),
        last_day=last_day and not exotic,
        months=frozenset(months),
        weekdays=(
            None if exotic or expanded[4] == ["*"] else frozenset(int(d) % 7 for d in expanded[4])
        ),
        exotic=exotic,
        hour_is_interval=is_interval_hour_field(parts[1]),
    )


def is_interval_hour_field(field: str) -> bool:
    """True for an hour field that steps through the whole day: ``*``, ``*/n``, ``0-23/n``.

    Such a cron is an *interval* cron (even spacing in UTC); any other hour field
    names fixed local times.
    """
    head, _, step = field.partition("/")
    if step and not step.isdigit():
        return False
    return head in ("*", "0-23")


def _is_last(day: date) -> bool:
    return (day + timedelta(days=1)).month != day.month


@lru_cache(maxsize=8192)
def _exotic_day_matches(expression: str, day: date) -> bool:
    _minute, _hour, days, months, weekdays = expression.split()
    return bool(croniter.match(f"0 0 {days} {months} {weekdays}", datetime.combine(day, time())))


__all__ = ["MAX_DAYS_BETWEEN_MATCHES", "CronFields", "cron_fields", "is_interval_hour_field"]
