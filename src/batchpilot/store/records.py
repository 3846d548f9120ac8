"""Read-only views of what the state store holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchpilot.states import RunStatus, TaskState


@dataclass(frozen=True)
class RunSummaryRecord:
    """A run as the lists show it: every column but the stored pipeline and params, so a
    page of runs reads no JSON (:class:`RunQueries`). :class:`RunRecord` adds those."""

    run_id: str
    pipeline: str
    status: RunStatus
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
    slot: datetime | None = None
    triggered_by: str = "manual"

    @property
    def slot_delay_s(self) -> float | None:
        """Seconds from a scheduled run's slot to its start (the scheduler's lag, jitter
        included); None for a run no schedule made or one that has not started."""
        return slot_delay_s(self.triggered_by, self.slot, self.started_at)


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunSummaryRecord):
    """One pipeline run as stored, with the pipeline and params it runs with."""

    source_path: str | None
    spec: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True)
class ActiveRunRecord:
    """What the scheduler reads of a queued or running run each pass: the few columns it
    decides on, without the stored pipeline and params (:meth:`RunStore.active_runs`)."""

    run_id: str
    pipeline: str
    status: RunStatus
    created_at: datetime
    owner: str | None
    executor: str
    cancel_requested: bool
    slot: datetime | None
    triggered_by: str
    #: a remote executor's id of the run (Airflow's DAG run id) once it was started there
    external_id: str | None = None


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
    """One attempt of a task (each keeps its own log: a file at ``log_path``, or for an
    attempt the engine ran on its own thread, its text in ``log_text``)."""

    run_id: str
    task_id: str
    attempt: int
    kind: str
    state: TaskState
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    log_path: str | None
    log_text: str | None = None


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


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def slot_delay_s(
    triggered_by: str, slot: datetime | None, started_at: datetime | None
) -> float | None:
    """Seconds from a schedule's slot to the start of the run it made; None for a run
    another trigger made (a backfill's slots are in the past on purpose) or not started."""
    if triggered_by != "schedule" or slot is None or started_at is None:
        return None
    return (started_at - slot).total_seconds()


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def run_record(row: Any) -> RunRecord:
    return RunRecord(
        **_summary_fields(row),
        source_path=row["source_path"],
        spec=row["spec"],
        params=row["params"],
    )


def run_summary_record(row: Any) -> RunSummaryRecord:
    """The record of a row of :data:`RUN_SUMMARY_COLUMNS` (or of every column)."""
    return RunSummaryRecord(**_summary_fields(row))


_STATUS_BY_VALUE: dict[str, RunStatus] = dict(RunStatus._value2member_map_)  # type: ignore[arg-type]


def _summary_fields(row: Any) -> dict[str, Any]:
    # called for every run of every page: dict lookups rather than RunStatus(...) calls
    return {
        "run_id": row["run_id"],
        "pipeline": row["pipeline"],
        "status": _STATUS_BY_VALUE.get(row["status"], RunStatus.UNKNOWN),
        "ds": row["ds"],
        "created_at": aware(row["created_at"]),
        "started_at": aware(row["started_at"]),
        "ended_at": aware(row["ended_at"]),
        "owner": row["owner"],
        "heartbeat_at": aware(row["heartbeat_at"]),
        "error": row["error"],
        "needs_attention": bool(row["needs_attention"]),
        "executor": row["executor"],
        "external_id": row["external_id"],
        "cancel_requested": bool(row["cancel_requested"]),
        "slot": aware(row["slot"]),
        "triggered_by": row["triggered_by"],
    }


def active_run_record(row: Any) -> ActiveRunRecord:
    return ActiveRunRecord(
        run_id=row["run_id"],
        pipeline=row["pipeline"],
        status=RunStatus(row["status"])
        if row["status"] in RunStatus._value2member_map_
        else RunStatus.UNKNOWN,
        created_at=aware(row["created_at"]),  # type: ignore[arg-type]
        owner=row["owner"],
        executor=row["executor"],
        cancel_requested=bool(row["cancel_requested"]),
        slot=aware(row["slot"]),
        triggered_by=row["triggered_by"],
        external_id=row["external_id"],
    )


def task_state(value: str) -> TaskState:
    return TaskState(value) if value in TaskState._value2member_map_ else TaskState.UNKNOWN


def task_record(row: Any) -> TaskRecord:
    return TaskRecord(
        run_id=row["run_id"],
        task_id=row["task_id"],
        position=row["position"],
        state=task_state(row["state"]),
        attempts=row["attempts"],
        rows_in=row["rows_in"],
        rows_out=row["rows_out"],
        rows_rejected=row["rows_rejected"],
        started_at=aware(row["started_at"]),
        ended_at=aware(row["ended_at"]),
        duration_s=row["duration_s"],
        error=row["error"],
        output=row["output"],
    )


def attempt_record(row: Any) -> AttemptRecord:
    return AttemptRecord(
        run_id=row["run_id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        kind=row["kind"],
        state=task_state(row["state"]),
        started_at=aware(row["started_at"]),  # type: ignore[arg-type]
        ended_at=aware(row["ended_at"]),
        error=row["error"],
        log_path=row["log_path"],
        log_text=row["log_text"],
    )


def callback_record(row: Any) -> CallbackRecord:
    return CallbackRecord(
        callback_id=row["callback_id"],
        task_id=row["task_id"],
        event=row["event"],
        context=row["context"],
        state=row["state"],
        attempts=row["attempts"],
        error=row["error"],
        fired_at=aware(row["fired_at"]),
    )
