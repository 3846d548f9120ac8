"""The task-level ``deadline``: a task must have succeeded within a duration of its run's start.

``nodes: [{id: load, monitoring: {deadline: 20m}}]`` is counted from the run's
start. While the run is running, ``serve``'s monitor loop fires the alert as
soon as the 20 minutes have passed without the task succeeding (so the on-call
hears it while it still matters, not when the run ends); at the run's end a task
that succeeded late fires it too (the plain ``batchpilot run`` case). The
episode is keyed (pipeline, ``deadline``, task): one alert, however many checks
see it, and the next run whose task succeeds in time resolves it with one
recovery notice. A run that failed gets no task deadline verdict at its end: its
``failure`` alert speaks for it (one alert, not two).

:func:`decide_task_deadline` is the pure decision;
:class:`batchpilot.monitor.deadlines.TaskDeadlineWatch` runs it on a clock inside
``serve`` for the running runs, :func:`batchpilot.monitor.evaluate.decide_run` at a
run's end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from batchpilot.monitor.rules import Verdict, format_duration
from batchpilot.notify.message import Severity
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunRecord, TaskRecord


def decide_task_deadline(
    task: TaskRecord,
    deadline_s: float,
    *,
    run_started_at: datetime,
    now: datetime,
) -> Verdict | None:
    """The verdict on one task with a ``deadline`` of ``deadline_s`` seconds after
    ``run_started_at``: holds when it succeeded in time, fires when it succeeded late or,
    at ``now``, has not succeeded and the deadline has passed; None when it is too early
    to say, or it ended otherwise (failed, skipped, cancelled)."""
    limit = format_duration(deadline_s)
    started = run_started_at.strftime("%H:%M UTC")
    baseline = f"the run started at {started}"
    threshold = f"succeeded within {limit} of the run's start"
    if task.state is TaskState.SUCCESS:
        if task.ended_at is None:
            return None
        took = (task.ended_at - run_started_at).total_seconds()
        observed = f"succeeded {format_duration(took)} after the run's start"
        if took <= deadline_s:
            return Verdict("deadline", False, observed, baseline, threshold, "", task=task.task_id)
    elif task.state.is_terminal():
        return None
    else:
        waited = (now - run_started_at).total_seconds()
        if waited <= deadline_s:
            return None
        observed = f"not done {format_duration(waited)} after the run's start ({task.state.value})"
    summary = (
        f"Task {task.task_id} had not succeeded {limit} after the run started at {started}: "
        f"{observed}."
    )
    return Verdict(
        "deadline",
        True,
        observed,
        baseline,
        threshold,
        summary,
        task=task.task_id,
        severity=Severity.CRITICAL,
    )


def decide_task_deadlines(
    run: RunRecord, tasks: Sequence[TaskRecord], deadlines: Mapping[str, float], now: datetime
) -> list[Verdict]:
    """The task deadline verdicts (``deadlines``: task id → seconds from the run's start)
    of a running or succeeded run; none for other runs."""
    if not deadlines or run.started_at is None:
        return []
    if run.status not in (RunStatus.RUNNING, RunStatus.SUCCESS):
        return []
    verdicts = [
        decide_task_deadline(task, deadlines[task.task_id], run_started_at=run.started_at, now=now)
        for task in tasks
        if task.task_id in deadlines
    ]
    return [v for v in verdicts if v is not None]


__all__ = ["decide_task_deadline", "decide_task_deadlines"]
