"""A pipeline's ``schedule``: the cron, its time zone and the policies of the scheduler.

``schedule: "0 2 * * *"`` (or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
``@yearly``) is short for ``schedule: {cron: "0 2 * * *"}``; the mapping form adds:

=========================  ============================================================
``timezone``               IANA name the cron is read in (default ``UTC``)
``catchup``                slots missed while the scheduler was down: ``none``, ``last``
                           (default: only the latest), ``all``
``start_date``/``end_date``  no slot before / after (a date alone: that whole local day)
``overlap``                a slot due while a run is active: ``skip`` (default),
                           ``buffer_one``, ``buffer_all``, ``cancel_running``, ``allow``
``max_active_runs``        runs of the schedule at once (default 1; 1 to 1000)
``jitter``                 a random delay up to this duration (``30s``; at most 1 h)
``max_consecutive_failures``  pause the schedule after that many failed runs (off)
=========================  ============================================================

:func:`parse_schedule` checks everything before anything runs and raises
:class:`~batchpilot.errors.SpecErrors` naming the file, the field and the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.durations import parse_duration
from batchpilot.spec.local_time import resolve_wall_time, start_of_local_day


class CatchupPolicy(StrEnum):
    """Which slots missed while the scheduler was down (or paused) still run."""

    NONE = "none"
    LAST = "last"
    ALL = "all"


class OverlapPolicy(StrEnum):
    """What a slot that falls due while a run of the schedule is active does."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    BUFFER_ALL = "buffer_all"
    CANCEL_RUNNING = "cancel_running"
    ALLOW = "allow"


#: The presets, as the 5-field crons they stand for.
PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_RANGES = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-7 or sun-sat")
DEFAULT_TIMEZONE = "UTC"
DEFAULT_MAX_ACTIVE_RUNS = 1
MAX_ACTIVE_RUNS_LIMIT = 1000
MAX_FAILURES_LIMIT = 1000
MAX_JITTER_S = 3600.0
#: A cron must fire within this many years of any date (29 February fires every 4 to 8).
MAX_YEARS_BETWEEN_SLOTS = 9
_DATE_HINT = "expected a date or a date-time (2024-01-31, 2024-01-31T02:00)"
_KEYS = (
    "cron",
    "timezone",
    "catchup",
    "start_date",
    "end_date",
    "overlap",
    "max_active_runs",
    "jitter",
    "max_consecutive_failures",
)


@dataclass(frozen=True)
class ScheduleSpec:
    """A checked schedule. ``cron`` has 5 fields (presets expanded); ``expression`` is the
    text as written; ``start_date``/``end_date`` are inclusive UTC instants."""

    cron: str
    expression: str
    timezone: str = DEFAULT_TIMEZONE
    catchup: CatchupPolicy = CatchupPolicy.LAST
    start_date: datetime | None = None
    end_date: datetime | None = None
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS
    jitter_s: float = 0.0
    max_consecutive_failures: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the cron is read in."""
        return ZoneInfo(self.timezone)

    def to_document(self) -> str | dict[str, Any]:
        """The file form that :func:`parse_schedule` reads back into an equal spec."""
        document: dict[str, Any] = {"cron": self.expression}
        defaults = ScheduleSpec(cron=self.cron, expression=self.expression)
        for key in _KEYS[1:]:
            attribute = "jitter_s" if key == "jitter" else key
            value = getattr(self, attribute)
            if value != getattr(defaults, attribute):
                document[key] = _document_value(value)
        return self.expression if len(document) == 1 else document


def _document_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value.value if isinstance(value, StrEnum) else value


def parse_schedule(value: Any, *, path: str | None = None, line: int | None = None) -> ScheduleSpec:
    """Check a ``schedule`` value (cron text or mapping) and return its spec.

    Raises :class:`SpecErrors` listing every problem, each naming ``path`` and the
    field (``schedule``, ``schedule.timezone``, …) with the offending value.
    """
    problems = _Problems(path, line)
    if isinstance(value, str):
        value = {"cron": value}
        problems.plain = True
    if not isinstance(value, Mapping):
        problems.plain = True
        problems.add(
            "cron", f"expected a cron expression (text) or a mapping with 'cron', got {value!r}"
        )
        problems.raise_any()
    for key in value:
        if key not in _KEYS:
            problems.add(str(key), f"unknown field (schedule fields: {', '.join(_KEYS)})")
    cron = _cron(value.get("cron"), problems)
    timezone = _timezone(value.get("timezone", DEFAULT_TIMEZONE), problems)
    zone = ZoneInfo(timezone) if timezone else UTC
    fields: dict[str, Any] = {
        "catchup": _choice(value, "catchup", CatchupPolicy, CatchupPolicy.LAST, problems),
        "overlap": _choice(value, "overlap", OverlapPolicy, OverlapPolicy.SKIP, problems),
        "max_active_runs": _bounded_int(
            value, "max_active_runs", DEFAULT_MAX_ACTIVE_RUNS, MAX_ACTIVE_RUNS_LIMIT, problems
        ),
        "max_consecutive_failures": _bounded_int(
            value, "max_consecutive_failures", None, MAX_FAILURES_LIMIT, problems
        ),
        "jitter_s": _jitter(value.get("jitter", 0), problems),
        "start_date": _instant(value.get("start_date"), "start_date", zone, problems),
        "end_date": _instant(value.get("end_date"), "end_date", zone, problems, end=True),
    }
    start, end = fields["start_date"], fields["end_date"]
    if start is not None and end is not None and end < start:
        problems.add(
            "end_date",
            f"end_date {value.get('end_date')!s} is before start_date {value.get('start_date')!s}",
        )
    problems.raise_any()
    assert cron is not None and timezone is not None
    expression = str(value["cron"]).strip()
    return ScheduleSpec(cron=cron, expression=expression, timezone=timezone, **fields)


class _Problems:
    """Collects the schedule's problems as SpecErrors naming file and field."""

    def __init__(self, path: str | None, line: int | None) -> None:
        self.path, self.line, self.plain = path, line, False
        self.errors: list[SpecError] = []

    def add(self, key: str, message: str) -> None:
        field = "schedule" if self.plain and key == "cron" else f"schedule.{key}"
        self.errors.append(SpecError(message, path=self.path, field=field, line=self.line))

    def raise_any(self) -> None:
        if self.errors:
            raise SpecErrors(self.errors)


def _cron(value: Any, problems: _Problems) -> str | None:
    if value is None:
        problems.add("cron", "required field is missing (a cron such as '0 2 * * *' or @daily)")
        return None
    if not isinstance(value, str):
        problems.add("cron", f"expected a cron expression as text, got {value!r}")
        return None
    text = value.strip()
    cron = PRESETS.get(text.lower(), text)
    parts = cron.split()
    if cron.startswith("@") or len(parts) != 5:
        problems.add(
            "cron",
            f"invalid cron expression {value!r}: use 5 fields (minute hour day-of-month month "
            f"day-of-week, e.g. '0 2 * * *') or a preset: @hourly, @daily, @weekly, @monthly, "
            "@yearly",
        )
        return None
    for index, part in enumerate(parts):
        alone = " ".join(part if i == index else "*" for i in range(5))
        try:
            croniter(alone, datetime(2000, 1, 1))
        except (CroniterError, ValueError, KeyError, IndexError, TypeError):
            problems.add(
                "cron",
                f"invalid cron expression {value!r}: {_CRON_FIELDS[index]} field {part!r} is "
                f"not valid (allowed: {_FIELD_RANGES[index]}, '*', lists, ranges and steps)",
            )
            return None
    return _cron_that_fires(value, " ".join(parts), problems)


def _cron_that_fires(value: str, cron: str, problems: _Problems) -> str | None:
    """Refuse a cron that never names a date (30 February), or that croniter cannot read."""
    try:
        croniter(
            cron, datetime(2000, 1, 1), max_years_between_matches=MAX_YEARS_BETWEEN_SLOTS
        ).get_next(datetime)
    except CroniterBadDateError:
        problems.add("cron", f"cron expression {value!r} never matches a date (e.g. 30 February)")
        return None
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as exc:
        problems.add("cron", f"invalid cron expression {value!r}: {exc}")
        return None
    return cron


def _timezone(value: Any, problems: _Problems) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.add("timezone", f"expected an IANA time zone name such as UTC, got {value!r}")
        return None
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.add(
            "timezone",
            f"unknown time zone {value!r}: use an IANA name such as Europe/Paris, "
            "America/New_York or UTC",
        )
        return None
    return value.strip()


def _choice(
    value: Mapping[str, Any], key: str, enum: type[StrEnum], default: StrEnum, problems: _Problems
) -> Any:
    raw = value.get(key, default.value)
    try:
        return enum(raw)
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        problems.add(key, f"unknown {key} policy {raw!r}: use one of {choices}")
        return default


def _bounded_int(
    value: Mapping[str, Any], key: str, default: int | None, limit: int, problems: _Problems
) -> int | None:
    raw = value.get(key, default)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= limit:
        problems.add(key, f"expected a whole number from 1 to {limit}, got {raw!r}")
        return default
    return raw


def _jitter(raw: Any, problems: _Problems) -> float:
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        problems.add("jitter", str(exc))
        return 0.0
    if not math.isfinite(seconds) or seconds > MAX_JITTER_S:
        problems.add("jitter", f"jitter must be a duration from 0 to 1h, got {raw!r}")
        return 0.0
    return seconds


def _instant(
    raw: Any, key: str, zone: Any, problems: _Problems, *, end: bool = False
) -> datetime | None:
    """A start or end bound as a UTC instant; a date alone covers that whole local day, and
    a naive time is local to the schedule's zone."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            problems.add(key, f"{_DATE_HINT}, got {raw!r}")
            return None
    try:
        if isinstance(raw, datetime):
            if raw.tzinfo is None:
                return resolve_wall_time(raw, zone)
            return raw.astimezone(UTC)
        if isinstance(raw, date):
            if end:
                return start_of_local_day(raw + timedelta(days=1), zone) - timedelta(microseconds=1)
            return resolve_wall_time(datetime.combine(raw, time()), zone)
    except (OverflowError, ValueError):
        pass
    problems.add(key, f"{_DATE_HINT}, got {raw!r}")
    return None


__all__ = [
    "PRESETS",
    "CatchupPolicy",
    "OverlapPolicy",
    "ScheduleSpec",
    "parse_schedule",
]
