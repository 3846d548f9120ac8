"""``GET /api/v1/executions/{run_id}/logs``: an attempt's log as text, or followed live.

Logs are read through the engine's services (local files, or the executor's
remote logs). A local log is only read inside the run's folder: a path the
store holds that points elsewhere reads as empty.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from batchpilot.api.auth import scoped
from batchpilot.api.models import problem_responses
from batchpilot.api.sse import EVENT_STREAM, SSE_HEADERS, polled_stream, sse_frame
from batchpilot.api.state import ApiState, api_state
from batchpilot.engine import LOCAL, AttemptLog
from batchpilot.errors import SpecError
from batchpilot.store.tokens import TokenScope

router = APIRouter(prefix="/executions", tags=["logs"])

State = Annotated[ApiState, Depends(api_state)]
_OPEN_STATES = ("pending", "running")


def inside_run_folder(log_path: str | None, run_folder: FilePath) -> bool:
    """True when ``log_path`` (symlinks and ``..`` resolved) lies under ``run_folder``."""
    if not log_path:
        return True
    try:
        return FilePath(log_path).resolve().is_relative_to(run_folder.resolve())
    except (OSError, ValueError):
        return False


def _confined(
    state: ApiState, run_id: str, executor: str, logs: list[AttemptLog]
) -> list[AttemptLog]:
    if executor != LOCAL:
        return logs
    folder = state.settings.runs_dir / run_id
    return [
        log
        if inside_run_folder(log.log_path, folder)
        else AttemptLog(
            log.task_id, log.attempt, log.state, log.error, None, "", log.offset, log.offset
        )
        for log in logs
    ]


def _read(
    state: ApiState, run_id: str, task: str | None, attempt: int | None, offset: int
) -> list[AttemptLog]:
    run = state.store.get_run(run_id)
    logs = state.service.read_logs(run.run_id, task=task, attempt=attempt, offset=offset)
    return _confined(state, run.run_id, run.executor, logs)


@router.get(
    "/{run_id}/logs",
    summary="A run's task logs as text; follow=true streams new lines (server-sent events)",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        200: {
            "content": {"text/plain": {}, EVENT_STREAM: {}},
            "description": "the log text, or an event stream of its lines",
        },
        **problem_responses(401, 403, 404, 409, 422),
    },
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def get_logs(
    state: State,
    run_id: Annotated[str, Path(min_length=1, max_length=100)],
    task: Annotated[str | None, Query(max_length=200)] = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0, description="bytes of the log to skip")] = 0,
    follow: Annotated[bool, Query(description="stream new lines until the attempt ends")] = False,
) -> PlainTextResponse | StreamingResponse:
    """One attempt (``task`` and ``attempt``) as its raw text from ``offset``, with the
    next offset in ``X-Next-Offset``; several attempts one after another, each under a
    ``== task attempt N (state) ==`` line. ``follow=true`` needs ``task``; it follows
    ``attempt`` (default: the latest) and sends ``log`` events of new text, then an
    ``end`` event once the attempt has ended."""
    if follow:
        if task is None:
            raise SpecError("follow=true needs 'task' (the task whose log to follow)", field="task")
        return _follow(state, run_id, task, attempt, offset)
    logs = _read(state, run_id, task, attempt, offset)
    if task is not None and attempt is not None:
        log = logs[0] if logs else None
        next_offset = log.next_offset if log else offset
        return PlainTextResponse(
            log.text if log else "", headers={"X-Next-Offset": str(next_offset)}
        )
    parts = [f"== {log.task_id} attempt {log.attempt} ({log.state}) ==\n{log.text}" for log in logs]
    return PlainTextResponse("\n".join(parts))


def _follow(
    state: ApiState, run_id: str, task: str, attempt: int | None, offset: int
) -> StreamingResponse:
    run = state.store.get_run(run_id)  # 404 before the stream starts
    state.service.read_logs(run.run_id, task=task)  # 409 for an unknown task
    position = {"attempt": attempt, "offset": offset}

    def poll() -> tuple[list[str], bool]:
        if position["attempt"] is None:
            attempts = _read(state, run.run_id, task, None, 0)
            if not attempts:
                return [], state.store.get_run(run.run_id).status.is_terminal()
            position["attempt"] = attempts[-1].attempt
        logs = _read(state, run.run_id, task, position["attempt"], position["offset"] or 0)
        if not logs:  # an attempt still to come, or one that never will: the run ended
            return [], state.store.get_run(run.run_id).status.is_terminal()
        log = logs[0]
        frames = [sse_frame("log", log.text)] if log.text else []
        position["offset"] = log.next_offset
        if log.state in _OPEN_STATES:
            return frames, False
        end = {"task": task, "attempt": log.attempt, "state": log.state, "offset": log.next_offset}
        return [*frames, sse_frame("end", end)], True

    stream = polled_stream(
        poll, poll_s=state.poll_s, heartbeat_s=state.heartbeat_s, stopping=state.stopping
    )
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=SSE_HEADERS)


__all__ = ["inside_run_folder", "router"]
