"""Acting on runs from outside their process: cancel, compensate, reap."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from batchpilot.engine.callbacks import fire_pending_callbacks
from batchpilot.engine.compensation import compensate, compensation_order
from batchpilot.engine.context import RunContext
from batchpilot.engine.listener import RunListener
from batchpilot.engine.ownership import claim_or_refuse, owner_is_dead
from batchpilot.engine.preflight import with_pipeline_connections
from batchpilot.engine.results import RunResult
from batchpilot.engine.resumption import close_dead_attempts
from batchpilot.errors import RunStateError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, TaskState
from batchpilot.steps.registry import StepRegistry, default_registry
from batchpilot.store import RunRecord, RunStore

CANCEL_WAIT_S = 30.0


def stored_spec(run: RunRecord) -> PipelineSpec:
    """The pipeline stored with the run (the version it was created with); as when its file
    is loaded, ``callable: module:function`` finds the modules beside the file."""
    spec = build_pipeline(run.spec, source_path=run.source_path)
    if spec.folder and spec.folder not in sys.path:
        sys.path.insert(0, spec.folder)
    return spec


def _context(
    run: RunRecord,
    spec: PipelineSpec,
    settings: Settings,
    registry: StepRegistry,
    *,
    store: RunStore,
    owner: str = "",
) -> RunContext:
    """The context to act on a stored run with (its compensations, its callbacks)."""
    settings = with_pipeline_connections(settings, spec)
    return RunContext.of_stored_run(
        run, spec, settings=settings, registry=registry, store=store, owner=owner
    )


def _is_driven(run: RunRecord, settings: Settings) -> bool:
    """True when a live process owns the run and keeps its heartbeat fresh."""
    if run.owner is None or owner_is_dead(run.owner) or run.heartbeat_at is None:
        return False
    return (time.time() - run.heartbeat_at.timestamp()) < settings.stale_after_s


def _waits_for_serve(run: RunRecord) -> bool:
    """A run queued for ``serve`` (a slot, a ``trigger``) that no process took yet: not dead."""
    return run.status is RunStatus.QUEUED and run.owner is None


def cancel_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    wait_s: float = CANCEL_WAIT_S,
    spec: PipelineSpec | None = None,
    registry: StepRegistry | None = None,
    compensate_after: bool = False,
) -> RunResult:
    """Stop a queued or running run: running tasks stop, pending ones become cancelled.

    The process driving the run notices the request within half a second and
    stops its attempts (their transactions roll back). A run whose process is
    gone is cancelled here directly. Raises :class:`RunStateError` for a run
    that already ended.
    """
    run = store.get_run(run_id)
    if run.status.is_terminal():
        raise RunStateError(
            f"run {run.run_id} is {run.status.value}; only a queued or running run can be "
            "cancelled",
            run_id=run.run_id,
        )
    if _is_driven(run, settings):
        store.request_cancel(run.run_id)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if store.get_run(run.run_id).status.is_terminal():
                break
            time.sleep(0.2)
        else:
            raise RunStateError(
                f"run {run.run_id}: cancel requested, but its process has not stopped within "
                f"{wait_s:g}s; it will stop at its next check",
                run_id=run.run_id,
            )
    else:
        owner = claim_or_refuse(store, run, settings)
        spec = spec or stored_spec(run)
        connections = with_pipeline_connections(settings, spec).connections
        close_dead_attempts(store, spec, run.run_id, connections)
        open_tasks = [t.task_id for t in store.get_tasks(run.run_id) if not t.state.is_terminal()]
        with store.write() as tx:
            tx.set_task_states(run.run_id, open_tasks, TaskState.CANCELLED, error="cancelled")
            tx.set_run_status(run.run_id, RunStatus.CANCELLED, error="cancelled", release=True)
        store.release_run(run.run_id, owner)
    if compensate_after:
        compensate_run(run.run_id, settings=settings, store=store, spec=spec, registry=registry)
    return RunResult.load(store, run.run_id)


def compensate_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    spec: PipelineSpec | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
) -> RunResult:
    """Run the compensations of a failed or cancelled run's succeeded tasks (for
    ``compensation: manual``, after a cancel, or to retry failed compensations).

    Raises :class:`RunStateError` when the run is not failed or cancelled, or
    has nothing to compensate.
    """
    run = store.get_run(run_id)
    registry = registry or default_registry()
    spec = spec or stored_spec(run)
    check_compensable(run, spec, store)
    owner = claim_or_refuse(store, run, settings)
    try:
        context = _context(run, spec, settings, registry, store=store, owner=owner)
        compensate(context, listener)
    finally:
        store.release_run(run.run_id, owner)
    return RunResult.load(store, run.run_id)


def check_compensable(run: RunRecord, spec: PipelineSpec, store: RunStore) -> None:
    """Raise :class:`RunStateError` unless ``run`` is failed or cancelled and has a
    succeeded task with a compensation to run."""
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunStateError(
            f"run {run.run_id} is {run.status.value}; only a failed or cancelled run can be "
            "compensated",
            run_id=run.run_id,
        )
    if not compensation_order(spec, store.get_tasks(run.run_id)):
        raise RunStateError(
            f"run {run.run_id} has no succeeded task to compensate", run_id=run.run_id
        )


def dead_runs(*, settings: Settings, store: RunStore) -> list[RunRecord]:
    """Queued or running runs no live process drives (a run queued for ``serve`` that
    no process took yet is not dead), oldest first."""
    return [
        run
        for run in store.runs_in_status([RunStatus.QUEUED, RunStatus.RUNNING])
        if is_dead(run, settings=settings)
    ]


def remote_runs_in_flight(store: RunStore) -> list[RunRecord]:
    """Runs started on a remote executor (Airflow: their DAG run exists) that the store
    does not show ended, ``unknown`` ones (their follower lost track) included, oldest
    first: what a follower must mirror until they end."""
    return [
        run
        for run in store.runs_in_status([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.UNKNOWN])
        if run.executor != "local" and run.external_id
    ]


def is_dead(run: RunRecord, *, settings: Settings) -> bool:
    """Whether a queued or running run has no live process driving it (killed, its
    machine gone), as :func:`dead_runs` sees it."""
    if run.status.is_terminal():
        return False
    return not _is_driven(run, settings) and not _waits_for_serve(run)


@dataclass(frozen=True)
class ReapedRun:
    """A run whose process had died, as ``runs reap`` left it."""

    run_id: str
    status: RunStatus
    closed_tasks: list[str]
    callbacks_fired: int


def reap_runs(
    *, settings: Settings, store: RunStore, registry: StepRegistry | None = None
) -> list[ReapedRun]:
    """Find runs whose driving process died; fail their open attempts (firing failure
    callbacks once) and leave the runs ``failed`` and resumable. Ended runs whose
    process died before their callbacks fired get those callbacks fired."""
    registry = registry or default_registry()
    reaped = []
    for run in store.runs_in_status([RunStatus.QUEUED, RunStatus.RUNNING]):
        if run.executor != "local" or _is_driven(run, settings) or _waits_for_serve(run):
            continue  # driven by Airflow, by a live process, or queued for `serve`: not dead
        try:
            owner = claim_or_refuse(store, run, settings)
        except RunStateError:
            continue  # another reaper or a resume got it first
        spec = stored_spec(run)
        connections = with_pipeline_connections(settings, spec).connections
        closed = close_dead_attempts(store, spec, run.run_id, connections)
        with store.write() as tx:
            tx.set_task_states(
                run.run_id, closed, TaskState.FAILED, error="the process running it died"
            )
            tx.set_run_status(
                run.run_id,
                RunStatus.FAILED,
                error=f"its process died; resume with: batchpilot resume {run.run_id}",
            )
        fired = fire_pending_callbacks(
            _context(run, spec, settings, registry, store=store, owner=owner)
        )
        store.release_run(run.run_id, owner)
        reaped.append(ReapedRun(run.run_id, RunStatus.FAILED, closed, fired))
    for run in store.ended_runs_with_unfired_callbacks():
        if _is_driven(run, settings):
            continue  # its process is still firing them
        try:
            owner = claim_or_refuse(store, run, settings)
        except RunStateError:
            continue
        try:
            fired = fire_pending_callbacks(
                _context(run, stored_spec(run), settings, registry, store=store, owner=owner)
            )
        finally:
            store.release_run(run.run_id, owner)
        reaped.append(ReapedRun(run.run_id, run.status, [], fired))
    return reaped
