"""Airflow's task and DAG-run states mapped onto batchpilot's (DESIGN.md, "States").

Pure functions: an unknown or future Airflow state maps to ``unknown``, never
to an exception, so a newer Airflow cannot break ``runs show``.
"""

from __future__ import annotations

from batchpilot.states import RunStatus, TaskState

#: Airflow task-instance state -> batchpilot task state. ``None`` is a task
#: instance that exists but was never scheduled.
TASK_STATES: dict[str | None, TaskState] = {
    None: TaskState.PENDING,
    "none": TaskState.PENDING,
    "scheduled": TaskState.PENDING,
    "queued": TaskState.PENDING,
    "running": TaskState.RUNNING,
    "up_for_retry": TaskState.RETRY,
    "up_for_reschedule": TaskState.RUNNING,
    "restarting": TaskState.RETRY,
    "deferred": TaskState.RUNNING,
    "success": TaskState.SUCCESS,
    "failed": TaskState.FAILED,
    "upstream_failed": TaskState.SKIPPED,
    "skipped": TaskState.SKIPPED,
    "removed": TaskState.CANCELLED,
}

#: Airflow state of a compensation task -> the state of the task it undoes.
#: Absent states (never ran, skipped because nothing needed undoing) leave the
#: task's own state alone.
COMPENSATION_STATES: dict[str, TaskState] = {
    "queued": TaskState.COMPENSATING,
    "running": TaskState.COMPENSATING,
    "up_for_retry": TaskState.COMPENSATING,
    "restarting": TaskState.COMPENSATING,
    "deferred": TaskState.COMPENSATING,
    "success": TaskState.COMPENSATED,
    "failed": TaskState.COMPENSATION_FAILED,
}

RUN_STATES: dict[str | None, RunStatus] = {
    "queued": RunStatus.QUEUED,
    "running": RunStatus.RUNNING,
    "success": RunStatus.SUCCESS,
    "failed": RunStatus.FAILED,
}


def task_state_from_airflow(state: str | None) -> TaskState:
    """The batchpilot state of a task instance in Airflow ``state`` (``unknown`` if new)."""
    key = state.lower() if isinstance(state, str) else state
    return TASK_STATES.get(key, TaskState.UNKNOWN)


def compensation_state_from_airflow(state: str | None) -> TaskState | None:
    """The state a compensation task gives the task it undoes, or None for no change."""
    if not isinstance(state, str):
        return None
    return COMPENSATION_STATES.get(state.lower())


def run_status_from_airflow(state: str | None) -> RunStatus:
    """The batchpilot status of a DAG run in Airflow ``state`` (``unknown`` if new)."""
    key = state.lower() if isinstance(state, str) else state
    return RUN_STATES.get(key, RunStatus.UNKNOWN)
