"""A pipeline's recent successful runs, narrowly: what the monitor's baselines need.

One indexed read: the last N successful runs of a pipeline (``bp_runs`` by
pipeline, status and end) joined to their tasks' durations and rows
(``bp_task_instances`` by primary key). :meth:`RunHistory.ended_run_view` reads
an ended run, its tasks and that history on one connection, with statements
built once: what a run's end costs the monitor. Reached as ``store.history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, select

from batchpilot.errors import RunNotFound
from batchpilot.states import RunStatus
from batchpilot.store.records import RunRecord, TaskRecord, aware, run_record, task_record
from batchpilot.store.tables import runs, select_full_runs, task_instances
from batchpilot.store.transaction import Wrapped


@dataclass(frozen=True)
class TaskFigures:
    """One task's duration and rows in one run (None: not recorded)."""

    duration_s: float | None
    rows_in: int | None
    rows_out: int | None
    rows_rejected: int | None


@dataclass(frozen=True)
class PastRun:
    """One successful run: its wall time and its tasks' figures."""

    run_id: str
    ended_at: datetime
    duration_s: float
    tasks: Mapping[str, TaskFigures]


def _last_successful(*, bounded: bool) -> Any:
    """The last successful runs of a pipeline joined to their tasks, in one statement built
    once (SQLAlchemy then reuses its compiled form)."""
    recent = select(runs.c.run_id, runs.c.started_at, runs.c.ended_at).where(
        runs.c.pipeline == bindparam("pipeline"),
        runs.c.status == RunStatus.SUCCESS.value,
        runs.c.ended_at.is_not(None),
    )
    if bounded:
        recent = recent.where(runs.c.ended_at < bindparam("before"))
    last = recent.order_by(runs.c.ended_at.desc()).limit(bindparam("limit")).subquery()
    return (
        select(
            last.c.run_id,
            last.c.started_at,
            last.c.ended_at,
            task_instances.c.task_id,
            task_instances.c.duration_s,
            task_instances.c.rows_in,
            task_instances.c.rows_out,
            task_instances.c.rows_rejected,
        )
        .select_from(last.outerjoin(task_instances, task_instances.c.run_id == last.c.run_id))
        .order_by(last.c.ended_at.desc(), last.c.run_id)  # a run's tasks together
    )


_LAST_SUCCESSFUL = _last_successful(bounded=False)
_LAST_SUCCESSFUL_BEFORE = _last_successful(bounded=True)
#: A run by its exact id, and its task instances in pipeline order (built once).
RUN_BY_ID = select_full_runs().where(runs.c.run_id == bindparam("run_id"))
TASKS_OF_RUN = (
    select(task_instances)
    .where(task_instances.c.run_id == bindparam("run_id"))
    .order_by(task_instances.c.position)
)


@dataclass(frozen=True)
class EndedRunView:
    """An ended run, its task instances, and the pipeline's successful runs before it."""

    run: RunRecord
    tasks: list[TaskRecord]
    history: list[PastRun]


class RunHistory:
    """Read-only queries over ended runs, for baselines."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def last_successful_runs(
        self, pipeline: str, *, before: datetime | None = None, limit: int = 10
    ) -> list[PastRun]:
        """The pipeline's last ``limit`` successful runs that ended before ``before`` (all,
        when None), newest first, with their tasks' figures."""
        with Wrapped(self.engine, begin=False) as conn:
            return _last_successful_runs(conn, pipeline, before=before, limit=limit)

    def ended_run_view(self, run_id: str, *, limit: int = 10) -> EndedRunView:
        """The run (exact id), its tasks and its pipeline's last ``limit`` successful runs
        that ended before it, read on one connection. Raises :class:`RunNotFound`."""
        with Wrapped(self.engine, begin=False) as conn:
            row = conn.execute(RUN_BY_ID, {"run_id": run_id}).mappings().first()
            if row is None:
                raise RunNotFound(run_id)
            run = run_record(row)
            tasks = [
                task_record(r) for r in conn.execute(TASKS_OF_RUN, {"run_id": run_id}).mappings()
            ]
            history = _last_successful_runs(conn, run.pipeline, before=run.ended_at, limit=limit)
        return EndedRunView(run, tasks, history)


def _last_successful_runs(
    conn: Any, pipeline: str, *, before: datetime | None, limit: int
) -> list[PastRun]:
    params: dict[str, Any] = {"pipeline": pipeline, "limit": limit}
    query = _LAST_SUCCESSFUL
    if before is not None:
        query, params["before"] = _LAST_SUCCESSFUL_BEFORE, before.astimezone(UTC)
    past: list[PastRun] = []
    current: str | None = None
    figures: dict[str, TaskFigures] = {}
    # plain tuples: this loop runs at every run's end (Row attribute access costs more)
    for run_id, started, ended, task_id, duration, rows_in, rows_out, rejected in conn.execute(
        query, params
    ):
        if run_id != current:
            current, figures = run_id, {}
            if started is not None and ended is not None:
                began, end = aware(started), aware(ended)
                duration_s = max(0.0, (end - began).total_seconds())  # type: ignore[operator]
                past.append(PastRun(run_id, end, duration_s, figures))  # type: ignore[arg-type]
        if task_id is not None:
            figures[task_id] = TaskFigures(duration, rows_in, rows_out, rejected)
    return past


__all__ = ["RUN_BY_ID", "TASKS_OF_RUN", "EndedRunView", "PastRun", "RunHistory", "TaskFigures"]
