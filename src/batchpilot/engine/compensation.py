"""Saga compensation: undo what a failed run's succeeded tasks did.

Compensations run one at a time in reverse order of completion, so a task's
dependents are compensated before the task itself. Each has its own retries
and attempt log; its task moves compensating → compensated |
compensation_failed. A compensation that stays failed flags the run for
attention (``runs list`` shows it); the run's status stays ``failed``.
"""

from __future__ import annotations

from datetime import datetime

from batchpilot.engine.actions import run_action
from batchpilot.engine.context import RunContext
from batchpilot.engine.listener import RunListener
from batchpilot.engine.outputs import TaskOutput
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import AttemptKind, TaskState
from batchpilot.store import RunStore, TaskRecord

_EPOCH = datetime.min


def compensation_order(spec: PipelineSpec, tasks: list[TaskRecord]) -> list[TaskRecord]:
    """Tasks to compensate, latest-completed first: succeeded (or half-compensated)
    tasks whose node declares ``compensate``."""
    eligible = [
        t
        for t in tasks
        if t.state in (TaskState.SUCCESS, TaskState.COMPENSATING, TaskState.COMPENSATION_FAILED)
        and t.task_id in spec.node_ids
        and spec.node(t.task_id).compensate is not None
    ]
    position = {node_id: i for i, node_id in enumerate(spec.node_ids)}
    return sorted(
        eligible,
        key=lambda t: (
            (t.ended_at.replace(tzinfo=None) if t.ended_at else _EPOCH),
            position[t.task_id],
        ),
        reverse=True,
    )


def compensate(run: RunContext, listener: RunListener | None = None) -> bool:
    """Run the compensations of the run's succeeded tasks; True if all succeeded.

    Sets the run's ``needs_attention`` flag when one of them failed.
    """
    listener = listener or RunListener()
    store = run.state_store
    run_id = run.run_id
    all_ok = True
    for task in compensation_order(run.spec, store.get_tasks(run_id)):
        node = run.spec.node(task.task_id)
        assert node.compensate is not None
        store.set_task_states(run_id, [task.task_id], TaskState.COMPENSATING)
        listener.task_state_changed(task.task_id, TaskState.COMPENSATING, attempt=task.attempts)
        output = TaskOutput.from_json(task.output)
        original = {
            "task_id": task.task_id,
            "state": task.state.value,
            "rows_in": task.rows_in,
            "rows_out": task.rows_out,
            "metadata": dict(output.metadata),
            "output": output.artifact.to_json() if output.artifact else None,
        }
        inputs = {task.task_id: output.artifact} if output.artifact else {}
        first_attempt = _next_attempt(store, run_id, task.task_id)

        def started(attempt: int, log_path: str, _task: str = task.task_id) -> None:
            store.start_compensation_attempt(run_id, _task, attempt, log_path=log_path)

        def ended(attempt: int, error: str | None, _task: str = task.task_id) -> None:
            store.finish_compensation_attempt(run_id, _task, attempt, error=error)

        outcome = run_action(
            run,
            node.compensate,
            task_id=task.task_id,
            log_name=f"{task.task_id}.compensation",
            first_attempt=first_attempt,
            original=original,
            inputs=inputs,
            on_attempt=started,
            on_attempt_end=ended,
        )
        state = TaskState.COMPENSATED if outcome.succeeded else TaskState.COMPENSATION_FAILED
        error = None if outcome.succeeded else f"compensation failed: {outcome.error}"
        store.set_task_states(run_id, [task.task_id], state, error=error)
        listener.task_state_changed(task.task_id, state, attempt=task.attempts, error=error)
        all_ok = all_ok and outcome.succeeded
    store.set_needs_attention(run_id, not all_ok)
    return all_ok


def _next_attempt(store: RunStore, run_id: str, task_id: str) -> int:
    attempts = store.get_attempts(run_id, task_id)
    return max((a.attempt for a in attempts if a.kind == AttemptKind.COMPENSATION), default=0) + 1
