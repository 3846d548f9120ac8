"""The API's request and response bodies, so the OpenAPI document says exactly what is sent.

Response models mirror the JSON the CLI prints (``runs show --output json``,
``pipelines list --output json``); the routes build them from those same
``to_dict()`` forms, so the two never drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A request body: unknown fields are an error naming them."""

    model_config = ConfigDict(extra="forbid")


class ExecuteOn(StrEnum):
    """Where an execution runs."""

    LOCAL = "local"
    AIRFLOW = "airflow"


class TriggerType(StrEnum):
    """What a caller records as the reason of the run (shown as ``triggered_by``)."""

    MANUAL = "manual"


class ExecuteRequest(Strict):
    """``POST /pipelines/{name}/execute``."""

    params: dict[str, Any] = Field(
        default_factory=dict, description="values of the pipeline's declared params"
    )
    date: str | None = Field(
        default=None,
        description="logical date ({{ ds }}), YYYY-MM-DD; default today in the schedule's zone",
    )
    trigger_type: TriggerType = TriggerType.MANUAL
    on: ExecuteOn = ExecuteOn.LOCAL


class Accepted(BaseModel):
    """An execution accepted: its run id and status (``queued`` until a worker takes it)."""

    run_id: str
    status: str
    created: bool = Field(description="false when the Idempotency-Key named an earlier run")


class RetryRequest(Strict):
    """``POST /executions/{run_id}/retry``: which tasks run again."""

    task: str | None = Field(default=None, description="this task (default: every failed one)")
    downstream: bool = Field(default=False, description="and everything after it")


class BackfillRequest(Strict):
    """``POST /pipelines/{name}/backfill``."""

    start: str = Field(description="first logical date or time (inclusive)")
    end: str = Field(description="last logical date or time (inclusive)")
    concurrency: int = Field(default=1, ge=1, le=32)


class TaskDetail(BaseModel):
    """One task of ``runs show --output json``."""

    state: str
    attempts: int
    rows_in: int | None
    rows_out: int | None
    rows_rejected: int | None
    duration_s: float | None
    error: str | None


class RunDetail(BaseModel):
    """A run as ``runs show --output json`` prints it."""

    run_id: str
    pipeline: str
    status: str
    error: str | None
    #: seconds from a scheduled run's slot to its start (None for other runs)
    slot_delay_s: float | None = None
    tasks: dict[str, TaskDetail]


class RunSummary(BaseModel):
    """A run as one row of ``runs list --output json``, with when and why it was made."""

    run_id: str
    pipeline: str
    status: str
    started_at: str | None
    ended_at: str | None
    needs_attention: bool
    executor: str
    created_at: str
    ds: str
    triggered_by: str


class RunPage(BaseModel):
    """A page of runs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[RunSummary]
    next_cursor: str | None


class PipelineInfo(BaseModel):
    """A pipeline as ``pipelines list --output json`` prints it."""

    name: str
    path: str
    schedule: str | None
    timezone: str | None
    next_run: str | None
    last_run: str | None
    last_status: str | None
    paused: bool
    paused_reason: str | None
    errors: list[str]


class BackfillAccepted(BaseModel):
    """A backfill started by ``serve`` in a process of its own."""

    pipeline: str
    start: str
    end: str
    concurrency: int
    pid: int


class Health(BaseModel):
    """``GET /health``: whether the server answers, and what it runs."""

    status: str
    scheduler: bool
    version: str


class ProblemDetails(BaseModel):
    """An error (RFC 9457); ``errors`` lists the fields at fault when there are several."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: these statuses, and 422 (a request that does not
    validate), answer with problem details (replacing FastAPI's own 422 body)."""
    return {
        status: {
            "model": ProblemDetails,
            "content": {"application/problem+json": {}},
            "description": "problem details (RFC 9457)",
        }
        for status in sorted({*statuses, 422})
    }
