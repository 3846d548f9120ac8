"""Reading run history for statistics and metrics: narrow, indexed queries.

``RunStore`` inherits these methods (like :class:`~batchpilot.store.outbox.OutboxStore`).
Every query filters on ``pipeline`` (indexed) or groups the whole table once, so a
scrape or ``batchpilot stats`` costs a few statements whatever the history's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from batchpilot.states import RunStatus
from batchpilot.store.records import (
    RunRecord,
    TaskRecord,
    aware,
    run_record,
    slot_delay_s,
    task_record,
)
from batchpilot.store.tables import runs, schedule_states, select_full_runs, task_instances

#: the statuses of runs that have ended
ENDED_STATUSES: tuple[str, ...] = (
    RunStatus.SUCCESS.value,
    RunStatus.FAILED.value,
    RunStatus.CANCELLED.value,
)

#: run ids per ``IN (…)`` list, well under every backend's limit of bound parameters
_CHUNK = 500


@dataclass(frozen=True)
class RunTiming:
    """When a run was made, started and ended, without its spec or params."""

    run_id: str
    pipeline: str
    status: RunStatus
    triggered_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    slot: datetime | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None unless both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def slot_delay_s(self) -> float | None:
        """Seconds from a scheduled run's slot to its start (see :func:`slot_delay_s`)."""
        return slot_delay_s(self.triggered_by, self.slot, self.started_at)


def _status(value: str) -> RunStatus:
    return RunStatus(value) if value in RunStatus._value2member_map_ else RunStatus.UNKNOWN


def timing_of(row: Any) -> RunTiming:
    """A :class:`RunTiming` of a row holding :data:`TIMING_COLUMNS`."""
    return RunTiming(
        run_id=row["run_id"],
        pipeline=row["pipeline"],
        status=_status(row["status"]),
        triggered_by=row["triggered_by"],
        created_at=aware(row["created_at"]),  # type: ignore[arg-type]
        started_at=aware(row["started_at"]),
        ended_at=aware(row["ended_at"]),
        slot=aware(row["slot"]),
    )


#: the columns of a :class:`RunTiming`
TIMING_COLUMNS = (
    runs.c.run_id,
    runs.c.pipeline,
    runs.c.status,
    runs.c.triggered_by,
    runs.c.created_at,
    runs.c.started_at,
    runs.c.ended_at,
    runs.c.slot,
)


class RunHistoryStore:
    """Queries over many runs: counts, the last ended runs, their tasks."""

    def _connect(self) -> Any:  # provided by RunStore
        raise NotImplementedError

    def last_ended_runs(self, pipeline: str, *, limit: int) -> list[RunRecord]:
        """The ``limit`` most recent ended runs of ``pipeline`` (newest first)."""
        query = (
            select_full_runs()
            .where(runs.c.pipeline == pipeline, runs.c.status.in_(ENDED_STATUSES))
            .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
            .limit(limit)
        )
        with self._connect() as conn:
            return [run_record(r) for r in conn.execute(query).mappings()]

    def recent_run_timings(self, *, per_pipeline: int) -> list[RunTiming]:
        """The ``per_pipeline`` most recent ended runs of every pipeline, newest first
        within each pipeline (one windowed query)."""
        rank = (
            func.row_number()
            .over(
                partition_by=runs.c.pipeline,
                order_by=(runs.c.created_at.desc(), runs.c.run_id.desc()),
            )
            .label("rank")
        )
        ranked = select(*TIMING_COLUMNS, rank).where(runs.c.status.in_(ENDED_STATUSES)).subquery()
        query = (
            select(ranked)
            .where(ranked.c.rank <= per_pipeline)
            .order_by(ranked.c.pipeline, ranked.c.rank)
        )
        with self._connect() as conn:
            return [timing_of(r) for r in conn.execute(query).mappings()]

    def tasks_of_runs(self, run_ids: Sequence[str]) -> dict[str, list[TaskRecord]]:
        """Each run's task instances in pipeline order (runs without tasks are absent)."""
        found: dict[str, list[TaskRecord]] = {}
        ids = list(dict.fromkeys(run_ids))
        with self._connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                query = (
                    select(task_instances)
                    .where(task_instances.c.run_id.in_(ids[start : start + _CHUNK]))
                    .order_by(task_instances.c.run_id, task_instances.c.position)
                )
                for row in conn.execute(query).mappings():
                    found.setdefault(row["run_id"], []).append(task_record(row))
        return found

    def run_counts(self) -> dict[tuple[str, str], int]:
        """How many runs the store holds, by (pipeline, status)."""
        query = select(runs.c.pipeline, runs.c.status, func.count()).group_by(
            runs.c.pipeline, runs.c.status
        )
        with self._connect() as conn:
            return {(p, s): n for p, s, n in conn.execute(query)}

    def known_pipelines(self) -> set[str]:
        """Pipelines the store has seen: with runs, or with a schedule ``serve`` keeps."""
        with self._connect() as conn:
            with_runs = set(conn.execute(select(runs.c.pipeline).distinct()).scalars())
            scheduled = set(conn.execute(select(schedule_states.c.pipeline)).scalars())
        return with_runs | scheduled
