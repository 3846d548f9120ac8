"""The end of a run: its final status, its run callbacks and, if it failed, compensation;
or its interruption (Ctrl-C, SIGTERM), which leaves it resumable."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from batchpilot.engine.callbacks import fire_pending_callbacks, run_callbacks
from batchpilot.engine.compensation import compensate
from batchpilot.engine.context import RunContext
from batchpilot.engine.handles import AttemptHandle
from batchpilot.engine.listener import RunListener
from batchpilot.errors import first_line
from batchpilot.spec.model import CompensationMode
from batchpilot.states import RunStatus, TaskState


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
    run: RunContext,
    *,
    states: Mapping[str, TaskState],
    cancelled: bool,
    listener: RunListener,
) -> RunStatus:
    """Record the run's final status with its run callbacks, in one transaction that
    first checks this process still holds the run; compensate a failed run's succeeded
    tasks (``compensation: auto``); fire the callbacks. Returns the status.

    Raises :class:`RunTakenOver` if another process took the run over.
    """
    spec, store = run.spec, run.state_store
    status, error = final_status(states, cancelled=cancelled)
    event = {RunStatus.SUCCESS: "on_run_success", RunStatus.FAILED: "on_run_failure"}.get(status)
    needs_compensation = (
        status is RunStatus.FAILED
        and spec.compensation is CompensationMode.AUTO
        and any(states[n.id] is TaskState.SUCCESS and n.compensate for n in spec.nodes)
    )
    with store.write() as tx:
        tx.hold_run(run.run_id, run.owner)
        if event:
            callbacks = run_callbacks(
                spec, event=event, status=status.value, error=error, generation=run.generation
            )
            tx.add_callbacks(run.run_id, callbacks)
        tx.set_run_status(run.run_id, status, error=error, release=not needs_compensation)
    if needs_compensation:
        try:
            compensate(run, listener)
        finally:
            store.release_run(run.run_id, run.owner)
    fire_pending_callbacks(run)
    listener.run_finished(run.run_id, status)
    return status


def record_interruption(
    run: RunContext, running: Iterable[AttemptHandle], listener: RunListener
) -> None:
    """The run was interrupted: close its running attempts as failed (their tasks go back
    to pending) and leave the run ``failed``, released, with the ``resume`` command.

    ``running``: the attempts the engine was waiting on. Any other attempt of the run
    still open is closed the same way: one the interruption caught while it was being
    handed to its worker, or one a second Ctrl-C kept the engine from stopping."""
    with run.state_store.write() as tx:
        tx.hold_run(run.run_id, run.owner)
        for handle in running:
            tx.finish_attempt(
                run.run_id,
                handle.task_id,
                handle.attempt,
                state=TaskState.PENDING,
                attempt_state=TaskState.FAILED,
                error="interrupted",
                duration_s=time.monotonic() - handle.started,
            )
        untracked = tx.close_open_attempts(run.run_id, error="interrupted")
        tx.set_task_states(run.run_id, [task for task, _ in untracked], TaskState.PENDING)
        tx.set_run_status(
            run.run_id,
            RunStatus.FAILED,
            error=f"interrupted; resume with: batchpilot resume {run.run_id}",
            release=True,
        )
    listener.run_finished(run.run_id, RunStatus.FAILED)


def record_crash(run: RunContext, exc: BaseException, listener: RunListener) -> None:
    """The engine could not go on (a connection that does not parse, a template, a bug):
    end the run ``failed`` with the one-line reason, its open attempts closed as failed,
    rather than leave it ``running``. Raises :class:`StoreError` if the store cannot be
    written either."""
    reason = run.redact(first_line(exc))
    with run.state_store.write() as tx:
        closed = tx.close_open_attempts(run.run_id, error=reason)
        tx.set_task_states(run.run_id, [task for task, _ in closed], TaskState.FAILED, error=reason)
        tx.set_run_status(run.run_id, RunStatus.FAILED, error=reason, release=True)
    listener.run_finished(run.run_id, RunStatus.FAILED)
