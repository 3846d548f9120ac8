"""Run and task states (see DESIGN.md, "States")."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Lifecycle of a pipeline run: queued → running → success | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    def is_terminal(self) -> bool:
        """True once the run can no longer change by itself."""
        return self in _TERMINAL_RUN


class TaskState(StrEnum):
    """Lifecycle of one task instance in a run."""

    PENDING = "pending"
    RUNNING = "running"
    RETRY = "retry"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    UNKNOWN = "unknown"

    def is_terminal(self) -> bool:
        """True for states a task leaves only by an explicit resume or retry."""
        return self in _TERMINAL_TASK


_TERMINAL_RUN = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED})
_TERMINAL_TASK = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
        TaskState.COMPENSATED,
        TaskState.COMPENSATION_FAILED,
    }
)


class CallbackState(StrEnum):
    """Lifecycle of a queued callback: pending → running → done | failed."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        """True once the callback fired (well or not); pending and running ones fire
        (again) when the run is driven next."""
        return self in (CallbackState.DONE, CallbackState.FAILED)


#: the stored states of callbacks still to fire: queued, or interrupted while they ran
UNFIRED_CALLBACKS: tuple[str, ...] = (CallbackState.PENDING.value, CallbackState.RUNNING.value)


class AttemptKind(StrEnum):
    """What an attempt ran: the task's own step, or its compensation."""

    RUN = "run"
    COMPENSATION = "compensation"


class RunTrigger(StrEnum):
    """What started a run: recorded on the run (``triggered_by``)."""

    MANUAL = "manual"  # `batchpilot run`, Pipeline.run(), `batchpilot trigger`
    SCHEDULE = "schedule"  # a slot of the pipeline's schedule
    TRIGGER = "trigger"  # a file trigger
    BACKFILL = "backfill"  # `batchpilot backfill`
    UPSTREAM = "upstream"  # an `after:` trigger on another pipeline's run
