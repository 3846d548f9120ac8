"""Writing a new run: its row, its pipeline document and its pending task instances, inside
a caller's transaction.

``RunStore.create_run`` and the scheduler's claims (:mod:`batchpilot.store.schedules`)
share this, so a run created with its slot claim is the same run as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchpilot.states import RunStatus, RunTrigger, TaskState
from batchpilot.store.records import utcnow
from batchpilot.store.tables import run_specs, runs, task_instances


@dataclass(frozen=True)
class NewRun:
    """Everything needed to create a run: queued, with its tasks pending.

    ``slot`` is the run's logical time (aware) when a schedule or a backfill
    made it; ``triggered_by`` says what started it.
    """

    run_id: str
    pipeline: str
    spec: dict[str, Any]
    params: dict[str, Any]
    ds: str
    source_path: str | None
    task_ids: Sequence[str]
    owner: str | None = None
    executor: str = "local"
    external_id: str | None = None
    slot: datetime | None = None
    triggered_by: RunTrigger = RunTrigger.MANUAL
    created_at: datetime = field(default_factory=utcnow)


def insert_run(conn: Any, run: NewRun) -> None:
    """Insert the run and all its task instances (pending) on ``conn``; the caller's
    transaction commits them."""
    insert_runs(conn, [run])


def insert_runs(conn: Any, new_runs: Sequence[NewRun]) -> None:
    """Insert many runs, their pipeline documents and their task instances (pending) on
    ``conn``, three statements in all (each executed for many rows); the caller's
    transaction commits them."""
    if not new_runs:
        return
    conn.execute(runs.insert(), [_run_row(run) for run in new_runs])
    conn.execute(run_specs.insert(), [{"run_id": run.run_id, "spec": run.spec} for run in new_runs])
    tasks = [
        {
            "run_id": run.run_id,
            "task_id": task_id,
            "position": i,
            "state": TaskState.PENDING.value,
            "attempts": 0,
        }
        for run in new_runs
        for i, task_id in enumerate(run.task_ids)
    ]
    if tasks:
        conn.execute(task_instances.insert(), tasks)


def _run_row(run: NewRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": RunStatus.QUEUED.value,
        "source_path": run.source_path,
        "params": run.params,
        "ds": run.ds,
        "created_at": run.created_at,
        "owner": run.owner,
        "heartbeat_at": run.created_at if run.owner else None,
        "needs_attention": False,
        "executor": run.executor,
        "external_id": run.external_id,
        "cancel_requested": False,
        "slot": as_utc(run.slot),
        "triggered_by": RunTrigger(run.triggered_by).value,
    }


def as_utc(instant: datetime | None) -> datetime | None:
    """``instant`` in UTC, as the store writes every instant (SQLite keeps no offset).

    Raises ``ValueError`` for a naive datetime, whose instant is unknown.
    """
    if instant is None:
        return None
    if instant.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got the naive {instant.isoformat()}")
    return instant.astimezone(UTC)


__all__ = ["NewRun", "as_utc", "insert_run", "insert_runs"]
