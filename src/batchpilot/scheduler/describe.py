"""What ``batchpilot pipelines list`` (and later the API's ``GET /pipelines``) shows of each
pipeline: its schedule in words, next run, last run, paused, file errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpilot.scheduler.catalog import CatalogEntry
from batchpilot.scheduler.slots import next_slot
from batchpilot.spec.schedule import ScheduleSpec
from batchpilot.store import RunStore

_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def schedule_in_words(schedule: ScheduleSpec) -> str:
    """``every day at 02:00``, ``every 15 minutes``… or the cron itself when it is unusual."""
    minute, hour, day, month, weekday = schedule.cron.split()
    if not (minute.isdigit() or minute.startswith("*/") or minute == "*"):
        return f"cron {schedule.expression}"
    if month == "*" and day == "*" and weekday == "*":
        if hour == "*":
            if minute == "*":
                return "every minute"
            if minute.startswith("*/"):
                return f"every {minute[2:]} minutes"
            return f"every hour at :{int(minute):02d}"
        if hour.startswith("*/") and minute.isdigit():
            return f"every {hour[2:]} hours at :{int(minute):02d}"
    if not (hour.isdigit() and minute.isdigit()):
        return f"cron {schedule.expression}"
    at = f"{int(hour):02d}:{int(minute):02d}"
    if month == "*" and day == "*" and weekday == "*":
        return f"every day at {at}"
    if month == "*" and day == "*" and weekday.isdigit():
        return f"every {_DAYS[int(weekday) % 7]} at {at}"
    if month == "*" and day.isdigit() and weekday == "*":
        return f"on day {int(day)} of every month at {at}"
    return f"cron {schedule.expression}"


@dataclass(frozen=True)
class PipelineRow:
    """One line of ``pipelines list``."""

    name: str
    path: str
    schedule: str | None
    timezone: str | None
    next_run: datetime | None
    last_run_id: str | None
    last_status: str | None
    paused: bool
    paused_reason: str | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``pipelines list --output json``."""
        return {
            "name": self.name,
            "path": self.path,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "last_run": self.last_run_id,
            "last_status": self.last_status,
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "errors": [self.error] if self.error else [],
        }


def pipeline_rows(entries: list[CatalogEntry], store: RunStore, now: datetime) -> list[PipelineRow]:
    """A row per pipeline file; the schedule and next run (in the schedule's time zone)
    are those of its last valid version."""
    states = {s.pipeline: s for s in store.schedules.schedule_states()}
    rows = []
    for entry in entries:
        schedule = entry.spec.schedule if entry.spec else None
        state = states.get(entry.name)
        last = store.list_runs(limit=1, pipeline=entry.name) if entry.spec else []
        upcoming = next_slot(schedule, now) if schedule else None
        rows.append(
            PipelineRow(
                name=entry.name,
                path=str(entry.path),
                schedule=schedule_in_words(schedule) if schedule else None,
                timezone=schedule.timezone if schedule else None,
                next_run=upcoming.local if upcoming else None,
                last_run_id=last[0].run_id if last else None,
                last_status=last[0].status.value if last else None,
                paused=bool(state and state.paused),
                paused_reason=state.paused_reason if state else None,
                error=entry.error,
            )
        )
    return rows


__all__ = ["PipelineRow", "pipeline_rows", "schedule_in_words"]
