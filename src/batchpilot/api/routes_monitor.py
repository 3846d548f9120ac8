"""``/api/v1/alerts``, ``/api/v1/stats`` and ``/metrics``: what the monitor knows, over HTTP.

The numbers are the monitor's own (:mod:`batchpilot.monitor`): ``/stats`` is the
dashboard overview's :func:`~batchpilot.monitor.overview.day_overview`, ``/alerts``
the episodes ``batchpilot alerts list`` prints, ``/metrics`` the Prometheus text of
:func:`~batchpilot.monitor.metrics.render_metrics`. All need a ``read`` token
(Prometheus sends one with ``authorization: {credentials: …}``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from batchpilot.api.auth import scoped
from batchpilot.api.models import problem_responses
from batchpilot.api.problems import Problem
from batchpilot.api.state import ApiState, api_state
from batchpilot.monitor.metrics import render_metrics
from batchpilot.monitor.overview import day_overview, day_window
from batchpilot.store import utcnow
from batchpilot.store.tokens import TokenScope

router = APIRouter(tags=["monitor"])
State = Annotated[ApiState, Depends(api_state)]


class AlertInfo(BaseModel):
    """One alert episode, as ``batchpilot alerts list --output json`` prints it."""

    id: int
    pipeline: str
    rule: str
    task: str | None
    state: Literal["open", "resolved"]
    severity: str
    opened_at: str
    resolved_at: str | None
    acknowledged_at: str | None
    run_id: str | None
    last_run_id: str | None
    resolved_by_run_id: str | None
    observed: str
    baseline: str
    threshold: str
    message: str
    occurrences: int
    reminders_sent: int


class DayStats(BaseModel):
    """A day's jobs: the numbers of the dashboard's overview."""

    day: str
    timezone: str
    done: int
    scheduled: int
    upcoming: int
    success: int
    failed: int
    running: int
    queued: int
    cancelled: int
    slow: int
    success_rate: float | None


@router.get(
    "/api/v1/alerts",
    response_model=list[AlertInfo],
    summary="Alert episodes, newest first",
    responses=problem_responses(401, 403),
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def list_alerts(
    state: State,
    open: Annotated[bool, Query(description="only the episodes still open")] = False,
    pipeline: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertInfo]:
    """The alert episodes (``alerts list``), filtered by state and pipeline."""
    records = state.store.alerts.list(open_only=open, pipeline=pipeline, limit=limit)
    return [AlertInfo(**record.to_dict()) for record in records]


@router.get(
    "/api/v1/stats",
    response_model=DayStats,
    summary="One day's jobs: done, scheduled, success rate, failed, slow",
    responses=problem_responses(400, 401, 403),
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def day_stats(
    state: State,
    day: Annotated[str | None, Query(description="YYYY-MM-DD; default: today")] = None,
    timezone: Annotated[
        str | None, Query(max_length=64, description="IANA zone; default: the server's")
    ] = None,
    pipeline: Annotated[str | None, Query(max_length=200, description="one pipeline")] = None,
) -> DayStats:
    """The day's numbers in the given time zone, as the dashboard's overview shows them."""
    zone = _zone(timezone or state.timezone)
    now: datetime = utcnow()
    try:
        chosen = date.fromisoformat(day) if day else now.astimezone(zone).date()
    except ValueError:
        raise Problem(400, f"day must be YYYY-MM-DD, got {day!r}", slug="bad-day") from None
    specs = [e.spec for e in state.entries() if e.spec is not None]
    if pipeline is not None:
        specs = [spec for spec in specs if spec.name == pipeline]
    overview = day_overview(state.store, specs, day_window(chosen, zone), now, pipeline=pipeline)
    return DayStats(**overview.to_dict())


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **problem_responses(401, 403),
    },
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def metrics(state: State) -> Response:
    """Runs, durations, rows, scheduler lag, outbox backlog and open alerts, read from the
    state store at each scrape."""
    body, content_type = render_metrics(state.store, open_alerts=state.store.alerts.open_counts)
    return Response(content=body, media_type=content_type)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(
            400,
            f"unknown time zone {name!r}: use an IANA name such as Europe/Paris",
            slug="bad-timezone",
        ) from None


__all__ = ["router"]
