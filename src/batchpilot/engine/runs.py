"""Starting, resuming and retrying runs: the engine's entry points."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from batchpilot.engine.callbacks import fire_pending_callbacks
from batchpilot.engine.context import RunContext
from batchpilot.engine.listener import RunListener
from batchpilot.engine.ownership import claim_or_refuse, owner_id, owner_is_dead
from batchpilot.engine.preflight import check_pipeline, merged_params, with_pipeline_connections
from batchpilot.engine.results import RunResult
from batchpilot.engine.resumption import (
    attempt_log_path,
    close_dead_attempts,
    continue_run,
    next_generation,
    spec_for_resume,
)
from batchpilot.engine.runner import execute_run
from batchpilot.errors import RunStateError
from batchpilot.settings import Settings
from batchpilot.spec.dates import parse_logical_date
from batchpilot.spec.limits import check_workers
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import UNFIRED_CALLBACKS, RunStatus, TaskState
from batchpilot.steps.registry import StepRegistry, default_registry
from batchpilot.store import RunRecord, RunStore, TaskRecord

__all__ = [  # the helpers are re-exported: callers imported them from here
    "attempt_log_path",
    "claim_or_refuse",
    "close_dead_attempts",
    "new_run_id",
    "next_generation",
    "owner_id",
    "owner_is_dead",
    "resume_run",
    "retry_run",
    "start_run",
]


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20261121T203000-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def start_run(
    spec: PipelineSpec,
    *,
    settings: Settings,
    store: RunStore,
    params: Mapping[str, Any] | None = None,
    ds: str | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
    workers: int | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Check the pipeline, create a run and execute it to the end.

    Raises :class:`SpecErrors` (before any run is created) for invalid input,
    and :class:`RunInterrupted` if stopped by a signal.
    """
    check_workers(workers)
    registry = registry or default_registry()
    settings = with_pipeline_connections(settings, spec)
    run_params = merged_params(spec, params or {})
    ds = parse_logical_date(ds) if ds is not None else date.today().isoformat()
    check_pipeline(
        spec,
        registry,
        settings.connections,
        params=run_params,
        ds=ds,
        output_roots=settings.output_roots,
    )
    run_id = run_id or new_run_id()
    owner = owner_id()
    run = RunContext.create(
        spec,
        run_id=run_id,
        params=run_params,
        ds=ds,
        settings=settings,
        registry=registry,
        store=store,
        owner=owner,
    )
    states = {t: TaskState.PENDING for t in spec.node_ids}
    store.create_run(
        run_id=run_id,
        pipeline=spec.name,
        spec=spec_to_document(spec),
        params=_jsonable_params(run_params),
        ds=ds,
        source_path=str(Path(spec.source_path).resolve()) if spec.source_path else None,
        task_ids=spec.node_ids,
        owner=owner,
    )
    # from here a Ctrl-C leaves the run resumable (execute_run records it): nothing between
    execute_run(run, states, {}, {}, listener=listener, workers=workers)
    return RunResult.load(store, run_id)


def resume_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    spec: PipelineSpec | None = None,
    load_file: Callable[[str], PipelineSpec] | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
    workers: int | None = None,
) -> RunResult:
    """Continue an interrupted or failed run, re-running only what did not succeed.

    The pipeline is ``spec`` if given; else re-read with ``load_file`` from its
    file when that still exists (so a fixed bug takes effect); else rebuilt
    from the copy stored with the run. Attempts a killed process left open
    are closed as failed and their ``on_failure`` callbacks fire. Raises
    :class:`RunStateError` if the run succeeded or was cancelled, or another
    live process drives it; :class:`RunNotFound` for an unknown id. An ended
    run whose process died before its callbacks fired only fires them.
    """
    run = store.get_run(run_id)
    ended = run.status in (RunStatus.SUCCESS, RunStatus.CANCELLED)
    if ended and store.get_callbacks(run_id, states=UNFIRED_CALLBACKS):
        # Its process died after the run ended but before its callbacks fired.
        return _fire_leftover_callbacks(
            run, settings=settings, store=store, spec=spec, load_file=load_file, registry=registry
        )
    if run.status is RunStatus.SUCCESS:
        raise RunStateError(
            f"run {run.run_id} already succeeded; nothing to resume", run_id=run.run_id
        )
    if run.status is RunStatus.CANCELLED:
        raise RunStateError(
            f"run {run.run_id} was cancelled; use 'batchpilot retry {run.run_id}' to run "
            "its tasks again",
            run_id=run.run_id,
        )

    def not_succeeded(spec: PipelineSpec, tasks: dict[str, TaskRecord]) -> set[str]:
        return {t for t in spec.node_ids if tasks[t].state is not TaskState.SUCCESS}

    return continue_run(
        run,
        not_succeeded,
        settings=settings,
        store=store,
        spec=spec,
        load_file=load_file,
        registry=registry,
        listener=listener,
        workers=workers,
    )


def _fire_leftover_callbacks(
    run: RunRecord,
    *,
    settings: Settings,
    store: RunStore,
    spec: PipelineSpec | None,
    load_file: Callable[[str], PipelineSpec] | None,
    registry: StepRegistry | None,
) -> RunResult:
    owner = claim_or_refuse(store, run, settings)
    try:
        spec = spec or spec_for_resume(run.source_path, run.spec, load_file)
        settings = with_pipeline_connections(settings, spec)
        registry = registry or default_registry()
        context = RunContext.of_stored_run(
            run, spec, settings=settings, registry=registry, store=store, owner=owner
        )
        fire_pending_callbacks(context)
    finally:
        store.release_run(run.run_id, owner)
    return RunResult.load(store, run.run_id)


def retry_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    task_id: str | None = None,
    downstream: bool = False,
    spec: PipelineSpec | None = None,
    load_file: Callable[[str], PipelineSpec] | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
    workers: int | None = None,
) -> RunResult:
    """Run tasks of a finished run again in the same run, like clearing tasks in Airflow.

    Without ``task_id``: every task that did not succeed. With it: that task
    (even if it succeeded), everything after it when ``downstream``, and in
    any case the tasks after it that did not succeed. Earlier attempts and
    their logs stay. Raises :class:`RunStateError` for a run still running or
    when there is nothing to retry.
    """
    run = store.get_run(run_id)
    if not run.status.is_terminal():
        raise RunStateError(
            f"run {run.run_id} is {run.status.value}; only a finished run can be retried "
            "(use 'batchpilot resume' for an interrupted one)",
            run_id=run.run_id,
        )

    def chosen(spec: PipelineSpec, tasks: dict[str, TaskRecord]) -> set[str]:
        if task_id is None:
            picked = {t for t in spec.node_ids if tasks[t].state is not TaskState.SUCCESS}
            if not picked:
                raise RunStateError(
                    f"run {run.run_id} has no failed task to retry", run_id=run.run_id
                )
            return picked
        if task_id not in spec.node_ids:
            raise RunStateError(
                f"run {run.run_id} has no task '{task_id}' (tasks: {', '.join(spec.node_ids)})",
                run_id=run.run_id,
            )
        after = _descendants(spec, task_id)
        picked = {task_id} | {
            t for t in after if downstream or tasks[t].state is not TaskState.SUCCESS
        }
        return picked

    return continue_run(
        run,
        chosen,
        settings=settings,
        store=store,
        spec=spec,
        load_file=load_file,
        registry=registry,
        listener=listener,
        workers=workers,
    )


def _descendants(spec: PipelineSpec, task_id: str) -> set[str]:
    children = spec.downstream()
    found: set[str] = set()
    stack = [task_id]
    while stack:
        for child in children[stack.pop()]:
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        out[key] = (
            value
            if isinstance(value, str | int | float | bool | type(None) | list | dict)
            else str(value)
        )
    return out
