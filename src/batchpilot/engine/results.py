"""What a run produced, as read back from the store (the shape ``--output json`` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchpilot.engine.outputs import TaskOutput
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore
from batchpilot.store.records import RunRecord, TaskRecord


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome in a run."""

    task_id: str
    state: TaskState
    attempts: int
    rows_in: int | None
    rows_out: int | None
    rows_rejected: int | None
    duration_s: float | None
    error: str | None
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``runs show``."""
        return {
            "state": self.state.value,
            "attempts": self.attempts,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rejected": self.rows_rejected,
            "duration_s": round(self.duration_s, 3) if self.duration_s is not None else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class RunResult:
    """A run's status and its tasks' results, keyed by task id."""

    run_id: str
    pipeline: str
    status: RunStatus
    tasks: dict[str, TaskResult]
    error: str | None = None
    needs_attention: bool = False
    #: seconds from a scheduled run's slot to its start (None unless a schedule made it)
    slot_delay_s: float | None = None

    @property
    def succeeded(self) -> bool:
        """True when the run ended in success."""
        return self.status is RunStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """``{"run_id", "pipeline", "status", "error", "slot_delay_s", "tasks": {...}}`` as
        the CLI prints it (``error``: why the run failed, or how to resume it; ``None`` for
        a good run; ``slot_delay_s``: see :attr:`RunRecord.slot_delay_s`)."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status.value,
            "error": self.error,
            "slot_delay_s": round(self.slot_delay_s, 3) if self.slot_delay_s is not None else None,
            "tasks": {tid: t.to_dict() for tid, t in self.tasks.items()},
        }

    @classmethod
    def from_records(cls, run: RunRecord, tasks: list[TaskRecord]) -> RunResult:
        """Build from store records."""
        return cls(
            run_id=run.run_id,
            pipeline=run.pipeline,
            status=run.status,
            error=run.error,
            needs_attention=run.needs_attention,
            slot_delay_s=run.slot_delay_s,
            tasks={
                t.task_id: TaskResult(
                    task_id=t.task_id,
                    state=t.state,
                    attempts=t.attempts,
                    rows_in=t.rows_in,
                    rows_out=t.rows_out,
                    rows_rejected=t.rows_rejected,
                    duration_s=t.duration_s,
                    error=t.error,
                    metadata=dict(TaskOutput.from_json(t.output).metadata),
                )
                for t in tasks
            },
        )

    @classmethod
    def load(cls, store: RunStore, run_id: str) -> RunResult:
        """Read a run's result; raises :class:`RunNotFound`."""
        run = store.get_run(run_id)
        return cls.from_records(run, store.get_tasks(run.run_id))
