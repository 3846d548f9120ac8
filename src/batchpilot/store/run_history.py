"""A pipeline's recent successful runs, narrowly: what the monitor's baselines need.

One indexed read: the last N successful runs of a pipeline (``bp_runs`` by
pipeline, status and end) joined to their tasks' durations and rows
(``bp_task_instances`` by primary key). Reached as ``store.history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, select

from batchpilot.states import RunStatus
from batchpilot.store.records import aware
from batchpilot.store.tables import runs, task_instances
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
        .order_by(last.c.ended_at.desc())
    )


_LAST_SUCCESSFUL = _last_successful(bounded=False)
_LAST_SUCCESSFUL_BEFORE = _last_successful(bounded=True)


class RunHistory:
    """Read-only queries over ended runs, for baselines."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def last_successful_runs(
        self, pipeline: str, *, before: datetime | None = None, limit: int = 10
    ) -> list[PastRun]:
        """The pipeline's last ``limit`` successful runs that ended before ``before`` (all,
        when None), newest first, with their tasks' figures."""
        params: dict[str, Any] = {"pipeline": pipeline, "limit": limit}
        query = _LAST_SUCCESSFUL
        if before is not None:
            query, params["before"] = _LAST_SUCCESSFUL_BEFORE, before.astimezone(UTC)
        with Wrapped(self.engine, begin=False) as conn:
            rows = conn.execute(query, params).all()
        ends: dict[str, tuple[datetime | None, datetime | None]] = {}
        figures: dict[str, dict[str, TaskFigures]] = {}
        for row in rows:
            if row.run_id not in ends:
                ends[row.run_id] = (aware(row.started_at), aware(row.ended_at))
                figures[row.run_id] = {}
            if row.task_id is not None:
                figures[row.run_id][row.task_id] = TaskFigures(
                    row.duration_s, row.rows_in, row.rows_out, row.rows_rejected
                )
        past = []
        for run_id, (started, ended) in ends.items():
            if started is None or ended is None:
                continue
            duration = max(0.0, (ended - started).total_seconds())
            past.append(PastRun(run_id, ended, duration, figures[run_id]))
        return past


__all__ = ["PastRun", "RunHistory", "TaskFigures"]
