"""Read-only views of what the state store holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpilot.states import RunStatus, TaskState


@dataclass(frozen=True)
class RunRecord:
    """One pipeline run as stored."""

    run_id: str
    pipeline: str
    status: RunStatus
    source_path: str | None
    spec: dict[str, Any]
    params: dict[str, Any]
    ds: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    owner: str | None
    heartbeat_at: datetime | None
    error: str | None
    needs_attention: bool
    executor: str = "local"
    external_id: str | None = None
    cancel_requested: bool = False


@dataclass(frozen=True)
class TaskRecord:
    """One task instance of a run as stored."""

    run_id: str
    task_id: str
    position: int
    state: TaskState
    attempts: int
    rows_in: int | None
    rows_out: int | None
    rows_rejected: int | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None
    error: str | None
    output: dict[str, Any] | None


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a task (each keeps its own log)."""

    run_id: str
    task_id: str
    attempt: int
    kind: str
    state: TaskState
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    log_path: str | None


@dataclass(frozen=True)
class CallbackRecord:
    """A callback queued by a transition; fired once by whoever drives the run."""

    callback_id: str
    task_id: str | None
    event: str
    context: dict[str, Any]
    state: str = "pending"
    attempts: int = 0
    error: str | None = None
    fired_at: datetime | None = None
