"""``GET /api/v1/events`` (server-sent events) and ``GET /api/v1/health`` (no token)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from batchpilot.api.auth import scoped
from batchpilot.api.models import Health, problem_responses
from batchpilot.api.sse import EVENT_STREAM, SSE_HEADERS, shared_stream
from batchpilot.api.state import ApiState, api_state
from batchpilot.store.tokens import TokenScope

router = APIRouter(tags=["events"])

State = Annotated[ApiState, Depends(api_state)]


def package_version() -> str:
    """batchpilot's installed version (``unknown`` when run from a source tree only)."""
    try:
        return version("batchpilot")
    except PackageNotFoundError:
        return "unknown"


@router.get(
    "/events",
    summary="Run and task state changes as server-sent events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {EVENT_STREAM: {}}, "description": "run and task events"},
        **problem_responses(401, 403),
    },
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def events(request: Request, state: State) -> StreamingResponse:
    """``run`` events (``{run_id, pipeline, status, error}``) when a run appears or changes
    status, ``task`` events (``{run_id, pipeline, task_id, state, attempts}``) when a task
    changes state, and a ``: keep-alive`` comment when nothing happened for a while. All
    open streams are fed by one look at the store per interval."""
    stream = shared_stream(
        request.app.state.events, heartbeat_s=state.heartbeat_s, stopping=state.stopping
    )
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=SSE_HEADERS)


@router.get("/health", response_model=Health, summary="Whether the server answers (no token)")
def health(state: State) -> Health:
    """``ok``, whether this ``serve`` schedules (``--no-scheduler``: false), and the version."""
    return Health(status="ok", scheduler=state.scheduling, version=package_version())


__all__ = ["router"]
