"""Runs a store shows triggered on Airflow, written through the store's interface, for the
tests of what batchpilot does with them without (or with a stand-in for) a real Airflow."""

from __future__ import annotations

from batchpilot.engine import new_run_id
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import RunStatus
from batchpilot.store import RunStore


def record_airflow_run(
    store: RunStore, spec: PipelineSpec, status: RunStatus, run_id: str | None = None
) -> str:
    """Record a run of ``spec`` on the ``airflow`` executor (its DAG run id = its run id),
    in ``status``; ``run_id`` is a new one unless given. Returns the run id."""
    run_id = run_id or new_run_id()
    store.create_run(
        run_id=run_id,
        pipeline=spec.name,
        spec=spec_to_document(spec),
        params={},
        ds="2024-01-01",
        source_path=None,
        task_ids=spec.node_ids,
        executor="airflow",
        external_id=run_id,
    )
    if status is not RunStatus.QUEUED:
        store.set_run_status(run_id, status)
    return run_id
