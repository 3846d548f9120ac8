"""Runs created now and executed later: by ``serve``'s workers, for a schedule's slot or a
queued ``trigger``.

:func:`queued_run` builds the run's record (the store's :class:`NewRun`) for a
caller that creates it in its own transaction (a slot claim, an idempotency
key); :func:`execute_stored_run` drives an existing queued run, or one whose
process died, to its end with the pipeline stored with the run — the version
that was valid when the run was created, even if its file broke since.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import check_pipeline, merged_params, with_pipeline_connections
from batchpilot.engine.results import RunResult
from batchpilot.engine.runs import _jsonable_params, resume_run
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import RunTrigger
from batchpilot.steps.registry import StepRegistry, default_registry
from batchpilot.store import RunStore
from batchpilot.store.run_rows import NewRun
from batchpilot.store.schedule_records import RunClaim


def queued_run(
    spec: PipelineSpec,
    *,
    run_id: str,
    ds: str,
    params: Mapping[str, Any] | None = None,
    slot: datetime | None = None,
    triggered_by: RunTrigger = RunTrigger.MANUAL,
    executor: str = "local",
) -> NewRun:
    """The record of a new queued run of ``spec`` (its params merged over the pipeline's
    defaults), unchecked: call :func:`check_queued_run` first for input from a user."""
    return NewRun(
        run_id=run_id,
        pipeline=spec.name,
        spec=spec_to_document(spec),
        params=_jsonable_params(merged_params(spec, params or {})),
        ds=ds,
        source_path=str(Path(spec.source_path).resolve()) if spec.source_path else None,
        task_ids=spec.node_ids,
        slot=slot,
        triggered_by=triggered_by,
        executor=executor,
    )


def check_queued_run(
    spec: PipelineSpec,
    *,
    settings: Settings,
    params: Mapping[str, Any] | None = None,
    ds: str,
    registry: StepRegistry | None = None,
) -> None:
    """Check the pipeline with these params and date as a run would, running nothing.

    Raises :class:`SpecErrors` naming the file, node and field of each problem.
    """
    settings = with_pipeline_connections(settings, spec)
    check_pipeline(
        spec,
        registry or default_registry(),
        settings.connections,
        params=merged_params(spec, params or {}),
        ds=ds,
    )


def execute_stored_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    listener: RunListener | None = None,
    workers: int | None = None,
) -> RunResult:
    """Drive a queued run (or one whose process died) to its end with its stored pipeline.

    Raises :class:`RunNotFound`, :class:`RunStateError` when it succeeded, was
    cancelled or a live process drives it, :class:`RunInterrupted` on
    Ctrl-C/SIGTERM (the run is left resumable).
    """
    run = store.get_run(run_id)
    spec = build_pipeline(run.spec, source_path=run.source_path)
    if spec.folder and spec.folder not in sys.path:
        # as when the file is loaded: ``callable: module:function`` finds modules beside it
        sys.path.insert(0, spec.folder)
    return resume_run(
        run.run_id, settings=settings, store=store, spec=spec, listener=listener, workers=workers
    )


def queue_checked_run(
    spec: PipelineSpec,
    *,
    settings: Settings,
    store: RunStore,
    run_id: str,
    ds: str,
    params: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    triggered_by: RunTrigger = RunTrigger.MANUAL,
    executor: str = "local",
) -> RunClaim:
    """Check, then create a queued run for ``serve`` to execute (``batchpilot trigger``,
    the API's execute). With ``idempotency_key`` a key used before returns that run
    (``created`` False) and records nothing. ``executor`` names where ``serve``'s worker
    will run it (``airflow``: triggered there and mirrored).

    Raises :class:`SpecErrors` before anything is recorded for invalid params or date.
    """
    check_queued_run(spec, settings=settings, params=params, ds=ds)
    run = queued_run(
        spec, run_id=run_id, ds=ds, params=params, triggered_by=triggered_by, executor=executor
    )
    if idempotency_key is not None:
        return store.schedules.create_run_once(run, idempotency_key=idempotency_key)
    store.create_run(
        run_id=run.run_id,
        pipeline=run.pipeline,
        spec=run.spec,
        params=run.params,
        ds=run.ds,
        source_path=run.source_path,
        task_ids=run.task_ids,
        triggered_by=run.triggered_by,
        executor=run.executor,
    )
    return RunClaim(run.run_id, created=True)


__all__ = ["check_queued_run", "execute_stored_run", "queue_checked_run", "queued_run"]
