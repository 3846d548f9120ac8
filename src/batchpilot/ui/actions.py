"""What the run page's buttons do.

``cancel`` asks the engine to stop the run (the engine's service returns once it
stopped). ``retry``, ``resume`` and ``compensate`` run tasks, so they never run
inside the request: :func:`queue_for_worker` checks the run's state, then hands
the run to the host's worker pool (``Dispatch``) and returns at once; the page
follows the run through the event stream.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from batchpilot.engine import RunService
from batchpilot.errors import ActionUnavailable, RunStateError
from batchpilot.states import RunStatus, TaskState


class RunAction(StrEnum):
    """A button of the run page, or the execution of a run queued by ``trigger``."""

    CANCEL = "cancel"
    RETRY = "retry"
    RESUME = "resume"
    COMPENSATE = "compensate"
    EXECUTE = "execute"


#: Hands ``(action, run_id)`` to the worker pool; returns at once.
Dispatch = Callable[[RunAction, str], None]


def hand_to_serve(action: RunAction, run_id: str) -> None:
    """The default dispatch: ``serve``'s dispatcher executes queued runs from the store by
    itself; other actions need a worker pool the host passes in. Raises
    :class:`ActionUnavailable` for those."""
    if action is RunAction.EXECUTE:
        return
    raise ActionUnavailable(
        f"this server has no worker pool to {action.value} run {run_id} in; use "
        f"'batchpilot {action.value} {run_id}' on the command line",
        action=action.value,
        run_id=run_id,
    )


def check_action(service: RunService, action: RunAction, run_id: str) -> None:
    """Raise :class:`RunStateError` (a sentence for the page) when the run's state does not
    allow ``action``; :class:`RunNotFound` for an unknown run."""
    run = service.store.get_run(run_id)
    status = run.status
    if action is RunAction.CANCEL:
        allowed = not status.is_terminal()
        need = "queued or running"
    elif action is RunAction.RETRY:
        allowed = status.is_terminal() and any(
            t.state is not TaskState.SUCCESS for t in service.store.get_tasks(run.run_id)
        )
        need = "finished with a task that did not succeed"
    elif action is RunAction.RESUME:
        allowed = status is RunStatus.FAILED
        need = "failed"
    elif action is RunAction.COMPENSATE:
        allowed = status in (RunStatus.FAILED, RunStatus.CANCELLED)
        need = "failed or cancelled"
    else:
        allowed, need = status is RunStatus.QUEUED, "queued"
    if not allowed:
        raise RunStateError(
            f"run {run.run_id} is {status.value}: {action.value} needs a run that is {need}",
            run_id=run.run_id,
        )


def queue_for_worker(
    service: RunService, action: RunAction, run_id: str, dispatch: Dispatch
) -> None:
    """Check that the run allows ``action``, then hand it to the worker pool.

    The one place the dashboard starts work on a run: when ``serve`` queues retries
    itself this becomes a call to the engine's service. Raises
    :class:`RunStateError`, :class:`RunNotFound`, :class:`ActionUnavailable`.
    """
    check_action(service, action, run_id)
    dispatch(action, service.store.get_run(run_id).run_id)


def perform(service: RunService, action: RunAction, run_id: str, dispatch: Dispatch) -> str:
    """Carry out a button's action; returns the sentence the page shows."""
    if action is RunAction.CANCEL:
        check_action(service, action, run_id)
        result = service.cancel(run_id)
        return f"run {result.run_id} is {result.status.value}"
    queue_for_worker(service, action, run_id, dispatch)
    return f"{action.value} of run {run_id} handed to a worker; this page follows it"


__all__ = [
    "Dispatch",
    "RunAction",
    "check_action",
    "hand_to_serve",
    "perform",
    "queue_for_worker",
]
