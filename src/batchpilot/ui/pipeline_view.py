"""What the pipeline page shows: schedule and next runs, pause state, the last runs'
durations and rows, and the parameters a trigger may set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from batchpilot.monitor.overview import run_duration_s
from batchpilot.scheduler.catalog import CatalogEntry
from batchpilot.scheduler.describe import schedule_in_words
from batchpilot.scheduler.slots import Slot, iter_slots
from batchpilot.spec.params import ParamSpec, param_specs_of
from batchpilot.store import RunRecord, RunStore
from batchpilot.store.schedule_records import ScheduleState
from batchpilot.ui.charts_svg import Bar, render_bars

RECENT_RUNS = 30
NEXT_RUNS = 5


@dataclass(frozen=True)
class PipelineView:
    """The pipeline page's content (``entry`` None: known from its runs only)."""

    name: str
    entry: CatalogEntry | None
    schedule: str | None
    timezone: str | None
    next_runs: list[Slot]
    state: ScheduleState | None
    runs: list[RunRecord]
    duration_svg: str
    rows_svg: str
    params: list[ParamSpec]


def pipeline_view(
    store: RunStore, entries: list[CatalogEntry], name: str, now: datetime
) -> PipelineView | None:
    """The page of pipeline ``name``; None when neither serve's catalog nor a run knows it."""
    entry = next((e for e in entries if e.spec is not None and e.name == name), None)
    runs = store.list_runs(limit=RECENT_RUNS, pipeline=name)
    if entry is None and not runs:
        return None
    spec = entry.spec if entry else None
    schedule = spec.schedule if spec else None
    next_runs: list[Slot] = []
    if schedule is not None:
        for slot in iter_slots(schedule, now):
            next_runs.append(slot)
            if len(next_runs) >= NEXT_RUNS:
                break
    states = {s.pipeline: s for s in store.schedules.schedule_states()}
    oldest_first = list(reversed(runs))
    durations = [
        Bar(r.run_id, run_duration_s(r), r.status.value, f"/runs/{r.run_id}") for r in oldest_first
    ]
    rows = [
        Bar(r.run_id, _rows_out(store, r), r.status.value, f"/runs/{r.run_id}")
        for r in oldest_first
    ]
    return PipelineView(
        name=name,
        entry=entry,
        schedule=schedule_in_words(schedule) if schedule else None,
        timezone=schedule.timezone if schedule else None,
        next_runs=next_runs,
        state=states.get(name),
        runs=runs,
        duration_svg=render_bars(durations, unit="s", title=f"duration of the last runs of {name}"),
        rows_svg=render_bars(rows, unit="rows", title=f"rows out of the last runs of {name}"),
        params=list(param_specs_of(spec).values()) if spec else [],
    )


def _rows_out(store: RunStore, run: RunRecord) -> float | None:
    """The rows the run's tasks wrote, summed (None when no task counted rows)."""
    counted = [t.rows_out for t in store.get_tasks(run.run_id) if t.rows_out is not None]
    return float(sum(counted)) if counted else None


__all__ = ["NEXT_RUNS", "RECENT_RUNS", "PipelineView", "pipeline_view"]
