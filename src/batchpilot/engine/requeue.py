"""Retry and resume without running anything here: the run is queued again for ``serve``.

The API must not drive a run inside a request. :func:`requeue_run` checks what
``retry`` / ``resume`` would check, sets the tasks to run again ``pending``,
and marks the run ``queued``; ``serve``'s dispatcher then hands it to a worker,
whose :meth:`RunService.execute` continues it like ``resume`` (every task that
did not succeed runs again, in the same run, earlier attempts kept). The
worker runs the pipeline stored with the run (as for any queued run).
"""

from __future__ import annotations

from batchpilot.engine.executors import LOCAL
from batchpilot.engine.results import RunResult
from batchpilot.engine.runs import _descendants
from batchpilot.errors import RunStateError
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus, RunTrigger, TaskState
from batchpilot.store import RunRecord, RunStore

_RETRYABLE = (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED)


def requeue_for_retry(
    store: RunStore, run_id: str, *, task: str | None = None, downstream: bool = False
) -> RunResult:
    """Queue a finished run's failed tasks (or ``task``, with ``downstream`` everything
    after it, and the unsucceeded tasks after it) to run again in ``serve``.

    Raises :class:`RunNotFound`, and :class:`RunStateError` for a run not finished,
    on another executor, without such a task or with nothing to retry.
    """
    run = _local_run(store, run_id)
    if run.status not in _RETRYABLE:
        raise RunStateError(
            f"run {run.run_id} is {run.status.value}; only a finished run can be retried "
            "(resume an interrupted one)",
            run_id=run.run_id,
        )
    states = {t.task_id: t.state for t in store.get_tasks(run.run_id)}
    if task is None:
        chosen = {t for t, state in states.items() if state is not TaskState.SUCCESS}
        if not chosen:
            raise RunStateError(f"run {run.run_id} has no failed task to retry", run_id=run_id)
    else:
        if task not in states:
            raise RunStateError(
                f"run {run.run_id} has no task '{task}' (tasks: {', '.join(sorted(states))})",
                run_id=run.run_id,
            )
        spec = build_pipeline(run.spec, source_path=run.source_path)
        after = _descendants(spec, task)
        chosen = {task} | {t for t in after if downstream or states.get(t) is not TaskState.SUCCESS}
    return _requeue(store, run, _RETRYABLE, sorted(chosen))


def requeue_for_resume(store: RunStore, run_id: str) -> RunResult:
    """Queue a failed run to continue in ``serve``: only what did not succeed runs again.

    Raises :class:`RunNotFound`, and :class:`RunStateError` for a run that succeeded,
    was cancelled (retry it), is queued or running already, or is on another executor.
    """
    run = _local_run(store, run_id)
    if run.status is not RunStatus.FAILED:
        hint = {
            RunStatus.SUCCESS: "nothing to resume",
            RunStatus.CANCELLED: "retry it to run its tasks again",
        }.get(run.status, "serve drives it (or resumes it after a crash)")
        raise RunStateError(
            f"run {run.run_id} is {run.status.value}; only a failed run can be resumed ({hint})",
            run_id=run.run_id,
        )
    return _requeue(store, run, (RunStatus.FAILED,), [])


def _local_run(store: RunStore, run_id: str) -> RunRecord:
    run = store.get_run(run_id)
    if run.executor != LOCAL:
        raise RunStateError(
            f"run {run.run_id} runs on {run.executor}; retry or resume it with the CLI "
            f"('batchpilot retry {run.run_id}')",
            run_id=run.run_id,
        )
    if run.triggered_by == RunTrigger.BACKFILL.value:
        raise RunStateError(
            f"run {run.run_id} belongs to a backfill, which drives its own runs; retry it with "
            f"'batchpilot retry {run.run_id}'",
            run_id=run.run_id,
        )
    if run.owner is not None:
        raise RunStateError(
            f"run {run.run_id} is being run or resumed by another process ({run.owner})",
            run_id=run.run_id,
        )
    return run


def _requeue(
    store: RunStore, run: RunRecord, allowed: tuple[RunStatus, ...], tasks: list[str]
) -> RunResult:
    if not store.requeue_run(run.run_id, from_statuses=allowed, pending_tasks=tasks):
        raise RunStateError(
            f"run {run.run_id} changed while it was being queued again; look at it and retry",
            run_id=run.run_id,
        )
    return RunResult.load(store, run.run_id)


__all__ = ["requeue_for_resume", "requeue_for_retry"]
