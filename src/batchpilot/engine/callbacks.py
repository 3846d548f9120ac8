"""Callbacks that always fire: queued in the same transaction as the transition
that causes them, then fired by whoever drives the run, and marked done.

A callback queued by a process that was then killed is fired by the next
``resume``, ``runs reap`` or worker that touches the run. Each has a stable
id (``load:on_failure:3:0``), so it is queued once; its state moves
pending → running → done | failed. The one window where a callback can fire
twice is a process killed *while the callback itself runs*: the next owner
fires it again with the same ``callback_id`` in its event, which a callback
that must never repeat a side effect can use as an idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from batchpilot.engine.actions import run_action
from batchpilot.engine.context import RunContext
from batchpilot.spec.model import ActionSpec, PipelineSpec
from batchpilot.states import UNFIRED_CALLBACKS, CallbackState
from batchpilot.store import CallbackRecord

TASK_EVENTS = ("on_success", "on_failure", "on_retry")
RUN_EVENTS = ("on_run_success", "on_run_failure")


def task_callbacks(
    spec: PipelineSpec,
    *,
    event: str,
    task_id: str,
    attempt: int,
    error: str | None,
    log_path: str | None,
    state: str,
) -> list[CallbackRecord]:
    """The callbacks a task's transition queues (none if the node declares none)."""
    actions: tuple[ActionSpec, ...] = getattr(spec.node(task_id), event)
    context = {
        "pipeline": spec.name,
        "task_id": task_id,
        "attempt": attempt,
        "error": error,
        "log_path": log_path,
        "state": state,
        "event": event,
    }
    return [
        CallbackRecord(
            callback_id=f"{task_id}:{event}:{attempt}:{i}",
            task_id=task_id,
            event=event,
            context={**context, "index": i},
        )
        for i in range(len(actions))
    ]


def group_callbacks(
    spec: PipelineSpec,
    members: Iterable[str],
    *,
    event: str,
    attempts: Mapping[str, int],
    log_path: Callable[[str, int], Path],
) -> list[CallbackRecord]:
    """The callbacks of every member of a transaction group, queued once the group
    committed (a member's success is real only then)."""
    found: list[CallbackRecord] = []
    for member in members:
        attempt = attempts.get(member, 0)
        found += task_callbacks(
            spec,
            event=event,
            task_id=member,
            attempt=attempt,
            error=None,
            log_path=str(log_path(member, attempt)),
            state=event.removeprefix("on_"),
        )
    return found


def run_callbacks(
    spec: PipelineSpec, *, event: str, status: str, error: str | None, generation: int
) -> list[CallbackRecord]:
    """The callbacks a run's end queues; ``generation`` counts resumes, so each end fires."""
    actions: tuple[ActionSpec, ...] = getattr(spec, event)
    context = {
        "pipeline": spec.name,
        "task_id": None,
        "attempt": generation,
        "error": error,
        "log_path": None,
        "state": status,
        "event": event,
    }
    return [
        CallbackRecord(
            callback_id=f"run:{event}:{generation}:{i}",
            task_id=None,
            event=event,
            context={**context, "index": i},
        )
        for i in range(len(actions))
    ]


def fire_pending_callbacks(run: RunContext) -> int:
    """Fire every queued (or interrupted) callback of the run; returns how many fired."""
    store = run.state_store
    fired = 0
    for record in store.get_callbacks(run.run_id, states=UNFIRED_CALLBACKS):
        action = _action_for(run.spec, record)
        if action is None:
            store.mark_callback(
                run.run_id,
                record.callback_id,
                state=CallbackState.FAILED.value,
                error="the callback is no longer in the pipeline",
            )
            continue
        store.mark_callback(
            run.run_id,
            record.callback_id,
            state=CallbackState.RUNNING.value,
            attempts=record.attempts + 1,
        )
        event: Mapping[str, Any] = {
            **record.context,
            "run_id": run.run_id,
            "callback_id": record.callback_id,
        }
        outcome = run_action(
            run,
            action,
            task_id=record.task_id or "run",
            log_name=f"{record.task_id or 'run'}.{record.event}.{record.context.get('attempt')}"
            f".{record.context.get('index', 0)}",
            event=event,
        )
        store.mark_callback(
            run.run_id,
            record.callback_id,
            state=(CallbackState.DONE if outcome.succeeded else CallbackState.FAILED).value,
            error=outcome.error,
        )
        fired += 1
    return fired


def _action_for(spec: PipelineSpec, record: CallbackRecord) -> ActionSpec | None:
    index = int(record.context.get("index", 0))
    try:
        owner: Any = spec if record.task_id is None else spec.node(record.task_id)
    except KeyError:
        return None
    actions = getattr(owner, record.event, ())
    return actions[index] if index < len(actions) else None
