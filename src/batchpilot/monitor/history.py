"""A pipeline's run history as plain values: one :class:`RunSample` per ended run.

What the statistics, the metrics and the rules read: durations, rows written by
the pipeline's loads, rejected rows, the delay from a schedule's slot to the
run's start. Built from store records by pure functions, read through the
store's interface by :func:`pipeline_history`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpilot.states import RunStatus
from batchpilot.store import RunRecord, RunStore, TaskRecord

#: the step types whose rows count as written (``load.postgres``, ``load.file``…)
LOAD_TYPE_PREFIX = "load."


@dataclass(frozen=True)
class RunSample:
    """What one ended run measured."""

    run_id: str
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    #: rows written by the pipeline's loads (see :func:`rows_written`); None: none recorded
    rows_written: int | None = None
    #: rows rejected by any task; None: no task recorded any count
    rows_rejected: int | None = None
    #: seconds from a scheduled run's slot to its start; None for other runs
    slot_delay_s: float | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None unless both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


def load_task_ids(spec: Mapping[str, Any]) -> set[str]:
    """The tasks whose rows count as written: the nodes of a ``load.*`` type, or, in a
    pipeline without any, its final nodes (those nothing depends on)."""
    nodes = [n for n in spec.get("nodes") or [] if isinstance(n, Mapping) and "id" in n]
    loads = {n["id"] for n in nodes if str(n.get("type", "")).startswith(LOAD_TYPE_PREFIX)}
    if loads:
        return loads
    upstream = {u for n in nodes for u in n.get("depends_on") or []}
    return {n["id"] for n in nodes} - upstream


def rows_written(spec: Mapping[str, Any], tasks: Sequence[TaskRecord]) -> int | None:
    """The rows out of the run's load tasks (:func:`load_task_ids`); None when none of
    them recorded a count."""
    loads = load_task_ids(spec)
    counts = [t.rows_out for t in tasks if t.task_id in loads and t.rows_out is not None]
    return sum(counts) if counts else None


def sample_of(run: RunRecord, tasks: Sequence[TaskRecord]) -> RunSample:
    """The sample of ``run`` given its task instances."""
    rejected = [t.rows_rejected for t in tasks if t.rows_rejected is not None]
    return RunSample(
        run_id=run.run_id,
        status=run.status,
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        rows_written=rows_written(run.spec, tasks),
        rows_rejected=sum(rejected) if rejected else None,
        slot_delay_s=run.slot_delay_s,
    )


def pipeline_history(store: RunStore, pipeline: str, *, last: int) -> list[RunSample]:
    """The ``last`` most recent ended runs of ``pipeline``, oldest first (two queries)."""
    records = store.last_ended_runs(pipeline, limit=last)
    tasks = store.tasks_of_runs([r.run_id for r in records])
    return [sample_of(r, tasks.get(r.run_id, [])) for r in reversed(records)]
