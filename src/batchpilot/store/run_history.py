"""A pipeline's recent successful runs, narrowly: what the monitor's baselines need.

Two indexed reads: the last N successful runs of a pipeline (``bp_runs`` by
pipeline, status and end), then their tasks' durations and rows (``bp_task_instances``
by primary key). Reached as ``store.history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select

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


class RunHistory:
    """Read-only queries over ended runs, for baselines."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def last_successful_runs(
        self, pipeline: str, *, before: datetime | None = None, limit: int = 10
    ) -> list[PastRun]:
        """The pipeline's last ``limit`` successful runs that ended before ``before`` (all,
        when None), newest first, with their tasks' figures."""
        query = (
            select(runs.c.run_id, runs.c.started_at, runs.c.ended_at)
            .where(
                runs.c.pipeline == pipeline,
                runs.c.status == RunStatus.SUCCESS.value,
                runs.c.ended_at.is_not(None),
            )
            .order_by(runs.c.ended_at.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(runs.c.ended_at < before.astimezone(UTC))
        with Wrapped(self.engine, begin=False) as conn:
            found = conn.execute(query).all()
            ids = [row.run_id for row in found]
            figures: dict[str, dict[str, TaskFigures]] = {run_id: {} for run_id in ids}
            if ids:
                task_rows = conn.execute(
                    select(
                        task_instances.c.run_id,
                        task_instances.c.task_id,
                        task_instances.c.duration_s,
                        task_instances.c.rows_in,
                        task_instances.c.rows_out,
                        task_instances.c.rows_rejected,
                    ).where(task_instances.c.run_id.in_(ids))
                )
                for row in task_rows:
                    figures[row.run_id][row.task_id] = TaskFigures(
                        row.duration_s, row.rows_in, row.rows_out, row.rows_rejected
                    )
        past = []
        for row in found:
            started, ended = aware(row.started_at), aware(row.ended_at)
            if started is None or ended is None:
                continue
            duration = max(0.0, (ended - started).total_seconds())
            past.append(PastRun(row.run_id, ended, duration, figures[row.run_id]))
        return past


__all__ = ["PastRun", "RunHistory", "TaskFigures"]
