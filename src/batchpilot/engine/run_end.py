"""The end of a run: its final status, its run callbacks and, if it failed, compensation."""

from __future__ import annotations

from collections.abc import Mapping

from batchpilot.engine.actions import ActionRunner
from batchpilot.engine.callbacks import fire_pending_callbacks, run_callbacks
from batchpilot.engine.compensation import compensate
from batchpilot.engine.listener import RunListener
from batchpilot.spec.model import CompensationMode, PipelineSpec
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore


def final_status(
    states: Mapping[str, TaskState], *, cancelled: bool
) -> tuple[RunStatus, str | None]:
    """The run's status once no task can change, and its one-line error."""
    if cancelled:
        return RunStatus.CANCELLED, "cancelled"
    if any(s in (TaskState.FAILED, TaskState.CANCELLED) for s in states.values()):
        failed = [t for t, s in states.items() if s is TaskState.FAILED]
        return RunStatus.FAILED, (
            f"failed tasks: {', '.join(failed)}" if failed else "tasks were cancelled"
        )
    return RunStatus.SUCCESS, None


def finish_run(
    *,
    spec: PipelineSpec,
    run_id: str,
    owner: str,
    generation: int,
    states: Mapping[str, TaskState],
    cancelled: bool,
    store: RunStore,
    actions: ActionRunner,
    listener: RunListener,
) -> RunStatus:
    """Record the run's final status with its run callbacks, in one transaction that
    first checks ``owner`` still holds the run; compensate a failed run's succeeded
    tasks (``compensation: auto``); fire the callbacks. Returns the status.

    Raises :class:`RunTakenOver` if another process took the run over.
    """
    status, error = final_status(states, cancelled=cancelled)
    event = {RunStatus.SUCCESS: "on_run_success", RunStatus.FAILED: "on_run_failure"}.get(status)
    needs_compensation = (
        status is RunStatus.FAILED
        and spec.compensation is CompensationMode.AUTO
        and any(states[n.id] is TaskState.SUCCESS and n.compensate for n in spec.nodes)
    )
    with store.write() as tx:
        tx.hold_run(run_id, owner)
        if event:
            tx.add_callbacks(
                run_id,
                run_callbacks(
                    spec, event=event, status=status.value, error=error, generation=generation
                ),
            )
        tx.set_run_status(run_id, status, error=error, release=not needs_compensation)
    if needs_compensation:
        try:
            compensate(store, actions, listener)
        finally:
            store.release_run(run_id, owner)
    fire_pending_callbacks(store, actions)
    listener.run_finished(run_id, status)
    return status
