"""Writing run history into a real store for the monitor's tests and benchmark: a run is
created through the store's interface, then given the times and figures it ended with."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore
from batchpilot.store.tables import runs, task_instances

_ids = itertools.count(1)


@dataclass(frozen=True)
class Figures:
    """A task's figures in one run."""

    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int | None = None
    duration_s: float = 1.0
    state: TaskState = TaskState.SUCCESS


def pipeline_document(name: str, **extra: Any) -> dict[str, Any]:
    """A checked pipeline document (as stored with a run): an extract and a load."""
    document = {
        "name": name,
        "nodes": [
            {"id": "extract", "type": "empty"},
            {"id": "load", "type": "load.postgres", "depends_on": ["extract"]},
        ],
        **extra,
    }
    return spec_to_document(build_pipeline(document))


def add_run(
    store: RunStore,
    document: Mapping[str, Any],
    *,
    status: RunStatus,
    started_at: datetime,
    duration_s: float,
    tasks: Mapping[str, Figures] | None = None,
    error: str | None = None,
    needs_attention: bool = False,
) -> str:
    """Record an ended run of ``document``; returns its id."""
    run_id = f"run-{next(_ids):06d}"
    task_ids = [node["id"] for node in document["nodes"]]
    store.create_run(
        run_id=run_id,
        pipeline=document["name"],
        spec=dict(document),
        params={},
        ds=started_at.date().isoformat(),
        source_path=None,
        task_ids=task_ids,
    )
    if error is None and status is RunStatus.FAILED:
        error = "failed tasks: load"
    with store.engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id)
            .values(
                status=status.value,
                started_at=started_at,
                ended_at=started_at + timedelta(seconds=duration_s),
                error=error,
                needs_attention=needs_attention,
            )
        )
        for task_id, figures in (tasks or {}).items():
            conn.execute(
                update(task_instances)
                .where(task_instances.c.run_id == run_id, task_instances.c.task_id == task_id)
                .values(
                    state=figures.state.value,
                    rows_in=figures.rows_in,
                    rows_out=figures.rows_out,
                    rows_rejected=figures.rows_rejected,
                    duration_s=figures.duration_s,
                )
            )
    return run_id


def set_run_state(
    store: RunStore,
    run_id: str,
    status: RunStatus,
    *,
    started_at: datetime,
    ended_at: datetime | None,
) -> None:
    """Give run ``run_id`` the status and times a test needs (as if it had got there)."""
    with store.engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.run_id == run_id)
            .values(status=status.value, started_at=started_at, ended_at=ended_at)
        )
