"""``/api/v1/executions``: runs listed a page at a time, shown, cancelled, retried, resumed,
compensated and refreshed. Work never runs in the request: retry and resume queue the run
for ``serve``'s workers, compensation runs in a process ``serve`` supervises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, status

from batchpilot.api.auth import scoped
from batchpilot.api.cursors import decode_cursor, encode_cursor
from batchpilot.api.models import (
    RetryRequest,
    RunDetail,
    RunPage,
    problem_responses,
)
from batchpilot.api.problems import Problem
from batchpilot.api.state import ApiState, api_state, read_store
from batchpilot.engine import RunResult, run_summary
from batchpilot.errors import RunStateError, SpecError
from batchpilot.states import RunStatus
from batchpilot.store import RunSummaryRecord
from batchpilot.store.run_queries import RunFilter
from batchpilot.store.tokens import TokenScope

router = APIRouter(prefix="/executions", tags=["executions"])

State = Annotated[ApiState, Depends(api_state)]
RunId = Annotated[
    str, Path(description="run id (or a unique prefix)", min_length=1, max_length=100)
]
MAX_PAGE = 500


def _detail(result: RunResult) -> RunDetail:
    return RunDetail.model_validate(result.to_dict())


def _summary(run: RunSummaryRecord) -> dict[str, Any]:
    """The JSON of :class:`RunSummary` (validated a page at a time, in one call)."""
    return {
        **run_summary(run),
        "created_at": run.created_at.isoformat(),
        "ds": run.ds,
        "triggered_by": run.triggered_by,
    }


def _statuses(text: str | None) -> list[RunStatus]:
    if not text:
        return []
    found = []
    for value in text.split(","):
        try:
            found.append(RunStatus(value.strip()))
        except ValueError:
            raise SpecError(
                f"'status' takes {', '.join(s.value for s in RunStatus)} (comma-separated), "
                f"got {value!r}",
                field="status",
            ) from None
    return found


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@router.get(
    "",
    response_model=RunPage,
    summary="Runs newest first, filtered, a page at a time",
    responses=problem_responses(401, 403, 422),
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
async def list_executions(
    state: State,
    pipeline: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[
        str | None, Query(alias="status", max_length=200, description="e.g. failed,cancelled")
    ] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> RunPage:
    """A page of runs; ``next_cursor`` (``null`` on the last page) fetches the next one.
    Runs created while paging never shift a page."""
    # async: a sync route costs two hand-offs to the thread pool and back (the call,
    # then the response's validation), which were most of this route's CPU time; the
    # page itself is read on the loop from SQLite, in the pool from PostgreSQL
    where = RunFilter(
        pipeline=pipeline,
        statuses=_statuses(status_),
        created_from=_aware(since),
        created_until=_aware(until),
    )
    after = decode_cursor(cursor) if cursor else None
    page = await read_store(
        state.store, lambda: state.store.queries.page(where, after=after, limit=limit)
    )
    return RunPage.model_validate(
        {
            "items": [_summary(r) for r in page.runs],
            "next_cursor": encode_cursor(page.next_cursor) if page.next_cursor else None,
        }
    )


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    summary="A run and its tasks (the JSON of 'runs show --output json')",
    responses=problem_responses(401, 403, 404),
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def get_execution(run_id: RunId, state: State) -> RunDetail:
    """The run's status and each task's state, attempts, rows, duration and error."""
    return _detail(state.service.show_run(run_id))


@router.post(
    "/{run_id}/cancel",
    response_model=RunDetail,
    summary="Stop a queued or running run (running tasks are interrupted)",
    responses=problem_responses(401, 403, 404, 409),
    **scoped(TokenScope.RUN),  # type: ignore[arg-type]
)
def cancel_execution(run_id: RunId, state: State) -> RunDetail:
    """Ask the process driving the run to stop it (its SQL statements are cancelled on
    their servers, Python tasks interrupted) and wait until it has; a queued run is
    cancelled at once. 409 for a run that already ended."""
    return _detail(state.service.cancel(run_id))


@router.post(
    "/{run_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunDetail,
    summary="Queue a finished run's failed tasks (or one task) to run again",
    responses=problem_responses(401, 403, 404, 409, 422),
    **scoped(TokenScope.RUN),  # type: ignore[arg-type]
)
def retry_execution(run_id: RunId, state: State, body: RetryRequest | None = None) -> RunDetail:
    """The run is queued again in the same run; ``serve``'s workers run the chosen tasks."""
    body = body or RetryRequest()
    run = state.service.queue_retry(run_id, task=body.task, downstream=body.downstream)
    state.runs_queued.set()
    return _detail(run)


@router.post(
    "/{run_id}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunDetail,
    summary="Queue a failed run to continue (only what did not succeed runs again)",
    responses=problem_responses(401, 403, 404, 409),
    **scoped(TokenScope.RUN),  # type: ignore[arg-type]
)
def resume_execution(run_id: RunId, state: State) -> RunDetail:
    """The run is queued again; ``serve``'s workers continue it."""
    run = state.service.queue_resume(run_id)
    state.runs_queued.set()
    return _detail(run)


@router.post(
    "/{run_id}/compensate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunDetail,
    summary="Undo a failed or cancelled run's succeeded tasks (in a process serve supervises)",
    responses=problem_responses(400, 401, 403, 404, 409),
    **scoped(TokenScope.RUN),  # type: ignore[arg-type]
)
def compensate_execution(run_id: RunId, state: State) -> RunDetail:
    """Start ``batchpilot compensate RUN_ID`` in a process of its own; the tasks' states
    (``compensating`` → ``compensated``) show its progress."""
    run = state.store.get_run(run_id)
    state.service.check_compensable(run.run_id)
    if run.owner is not None:
        raise RunStateError(
            f"run {run.run_id} is being driven by another process ({run.owner})",
            run_id=run.run_id,
        )
    if state.commands is None:
        raise Problem(400, "this server does not run compensations", slug="not-supported")
    state.commands.start_command(f"compensate-{run.run_id}", ["compensate", run.run_id])
    return _detail(RunResult.load(state.store, run.run_id))


@router.post(
    "/{run_id}/monitor",
    response_model=RunDetail,
    summary="Refresh a remote (Airflow) run's state from its executor, then show it",
    responses=problem_responses(401, 403, 404, 502),
    **scoped(TokenScope.RUN),  # type: ignore[arg-type]
)
def monitor_execution(run_id: RunId, state: State) -> RunDetail:
    """Ask the run's executor for its current state (Airflow's REST API for an Airflow
    run; a local run is always current in the store) and return the run."""
    return _detail(state.service.show_run(run_id))


__all__ = ["router"]
