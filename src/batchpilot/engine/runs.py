"""Starting and resuming runs: the engine's entry points."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import check_pipeline, merged_params
from batchpilot.engine.results import RunResult
from batchpilot.engine.runner import RunExecutor
from batchpilot.errors import RunStateError, SpecError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import RunStatus, TaskState
from batchpilot.steps.registry import StepRegistry, default_registry
from batchpilot.store import RunStore


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20261121T203000-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def owner_id() -> str:
    """Identifies this process as a run's owner: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_is_dead(owner: str | None) -> bool:
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only its heartbeat can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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
    registry = registry or default_registry()
    run_params = merged_params(spec, params or {})
    ds = ds or date.today().isoformat()
    check_pipeline(spec, registry, settings.connections, params=run_params, ds=ds)
    run_id = run_id or new_run_id()
    owner = owner_id()
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
    executor = RunExecutor(
        spec=spec,
        run_id=run_id,
        params=run_params,
        ds=ds,
        store=store,
        settings=settings,
        registry=registry,
        owner=owner,
        listener=listener,
        workers=workers,
    )
    states = {t: TaskState.PENDING for t in spec.node_ids}
    executor.execute(states, {}, {})
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
    from the copy stored with the run. Raises
    :class:`RunStateError` if the run succeeded, or another live process is
    driving it; :class:`RunNotFound` for an unknown id.
    """
    registry = registry or default_registry()
    run = store.get_run(run_id)
    run_id = run.run_id
    if run.status is RunStatus.SUCCESS:
        raise RunStateError(f"run {run_id} already succeeded; nothing to resume", run_id=run_id)
    if run.status is RunStatus.CANCELLED:
        raise RunStateError(f"run {run_id} was cancelled; start a new run", run_id=run_id)
    owner = owner_id()
    dead = [run.owner] if run.owner and _owner_is_dead(run.owner) else []
    if not store.claim_run(run_id, owner, stale_after_s=settings.stale_after_s, dead_owners=dead):
        raise RunStateError(
            f"run {run_id} is being run or resumed by another process ({run.owner})",
            run_id=run_id,
        )
    try:
        spec = spec or _spec_for_resume(run.source_path, run.spec, load_file)
        tasks = {t.task_id: t for t in store.get_tasks(run_id)}
        missing = [n for n in spec.node_ids if n not in tasks]
        if missing:
            raise SpecError(
                f"the pipeline now has nodes the run does not know ({', '.join(missing)}); "
                "start a new run instead",
                path=spec.source_path,
            )
        check_pipeline(spec, registry, settings.connections, params=run.params, ds=run.ds)
    except BaseException:
        store.release_run(run_id, owner)
        raise
    store.close_open_attempts(run_id, error="the process running this attempt died")
    states: dict[str, TaskState] = {}
    attempts: dict[str, int] = {}
    outputs: dict[str, dict[str, Any]] = {}
    to_reset = []
    for task_id in spec.node_ids:
        record = tasks[task_id]
        attempts[task_id] = record.attempts
        if record.state is TaskState.SUCCESS:
            states[task_id] = TaskState.SUCCESS
            outputs[task_id] = record.output or {}
        else:
            states[task_id] = TaskState.PENDING
            if record.state is not TaskState.PENDING:
                to_reset.append(task_id)
    store.set_task_states(run_id, to_reset, TaskState.PENDING)
    executor = RunExecutor(
        spec=spec,
        run_id=run_id,
        params=run.params,
        ds=run.ds,
        store=store,
        settings=settings,
        registry=registry,
        owner=owner,
        listener=listener,
        workers=workers,
    )
    executor.execute(states, attempts, outputs)
    return RunResult.load(store, run_id)


def _spec_for_resume(
    source_path: str | None,
    stored: dict[str, Any],
    load_file: Callable[[str], PipelineSpec] | None,
) -> PipelineSpec:
    if source_path and load_file is not None and Path(source_path).exists():
        return load_file(source_path)
    return build_pipeline(stored, source_path=source_path)


def _jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        out[key] = (
            value
            if isinstance(value, str | int | float | bool | type(None) | list | dict)
            else str(value)
        )
    return out
