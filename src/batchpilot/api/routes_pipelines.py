"""``/api/v1/pipelines``: the pipelines ``serve`` knows, executing one, pausing, backfilling."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, status

from batchpilot.api.auth import scoped
from batchpilot.api.models import (
    Accepted,
    BackfillAccepted,
    BackfillRequest,
    ExecuteRequest,
    PipelineInfo,
    problem_responses,
)
from batchpilot.api.problems import Problem
from batchpilot.api.state import ApiState, api_state
from batchpilot.engine import new_run_id
from batchpilot.errors import SpecError
from batchpilot.scheduler.catalog import CatalogEntry, PipelineNotFound
from batchpilot.scheduler.describe import pipeline_rows
from batchpilot.spec.dates import parse_logical_date
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import utcnow
from batchpilot.store.tokens import TokenScope

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

State = Annotated[ApiState, Depends(api_state)]
Name = Annotated[str, Path(description="pipeline name", min_length=1, max_length=200)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="the same key returns the same run, created once",
    ),
]


def _entry(state: ApiState, name: str) -> CatalogEntry:
    entries = state.entries()
    for entry in entries:
        if entry.spec is not None and entry.name == name:
            return entry
    for entry in entries:
        if entry.name == name and entry.error:
            return entry
    raise Problem(
        404,
        f"no pipeline named '{name}' (known: {', '.join(sorted({e.name for e in entries}))})",
        slug="pipeline-not-found",
    )


def _spec(state: ApiState, name: str) -> PipelineSpec:
    entry = _entry(state, name)
    if entry.spec is None:
        raise SpecError(f"pipeline '{name}' is invalid: {entry.error}", path=entry.path)
    return entry.spec


def _info(state: ApiState, entries: list[CatalogEntry]) -> list[PipelineInfo]:
    rows = pipeline_rows(entries, state.store, utcnow())
    return [PipelineInfo(**row.to_dict()) for row in rows]


@router.get(
    "",
    response_model=list[PipelineInfo],
    summary="Every pipeline: schedule, next run, paused, last status, file errors",
    responses=problem_responses(401, 403),
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def list_pipelines(state: State) -> list[PipelineInfo]:
    """The pipelines under ``serve``'s folder, as ``pipelines list --output json``."""
    return _info(state, state.entries())


@router.get(
    "/{name}",
    response_model=PipelineInfo,
    summary="One pipeline",
    responses=problem_responses(401, 403, 404),
    **scoped(TokenScope.READ),  # type: ignore[arg-type]
)
def get_pipeline(name: Name, state: State) -> PipelineInfo:
    """One pipeline, as a row of ``pipelines list --output json``."""
    return _info(state, [_entry(state, name)])[0]


@router.post(
    "/{name}/execute",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Queue a run (serve's workers execute it)",
    responses=problem_responses(400, 401, 403, 404, 409, 422),
    **scoped(TokenScope.RUN),  # type: ignore[arg-type]
)
def execute_pipeline(
    name: Name,
    state: State,
    body: ExecuteRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Check the params and date against the pipeline, then queue a run for ``serve``'s
    workers; never runs anything in the request. The same ``Idempotency-Key`` returns the
    run it created the first time. ``"on": "airflow"``: a worker deploys the pipeline's DAG
    and triggers it on the Airflow that ``BATCHPILOT_AIRFLOW_*`` names, then mirrors it
    (``POST /executions/{id}/monitor`` refreshes it); 409 naming the settings to set when
    this server has no Airflow configured."""
    body = body or ExecuteRequest()
    spec = _spec(state, name)
    if body.date is not None:
        ds = parse_logical_date(body.date)
    else:
        zone = spec.schedule.zone if spec.schedule else None
        ds = datetime.now(zone).date().isoformat()
    claim = state.service.queue(
        spec,
        run_id=new_run_id(),
        ds=ds,
        params=body.params,
        idempotency_key=idempotency_key,
        on=body.on.value,
    )
    state.runs_queued.set()
    run = state.store.get_run(claim.run_id)
    return Accepted(run_id=run.run_id, status=run.status.value, created=claim.created)


def _set_paused(state: ApiState, name: str, paused: bool) -> PipelineInfo:
    entry = _entry(state, name)
    state.store.schedules.set_paused(name, paused, reason="paused over the API" if paused else None)
    return _info(state, [entry])[0]


@router.post(
    "/{name}/pause",
    response_model=PipelineInfo,
    summary="Stop scheduling a pipeline (queued and running runs go on)",
    responses=problem_responses(401, 403, 404),
    **scoped(TokenScope.ADMIN),  # type: ignore[arg-type]
)
def pause_pipeline(name: Name, state: State) -> PipelineInfo:
    """Pause the pipeline's schedule and triggers."""
    return _set_paused(state, name, True)


@router.post(
    "/{name}/unpause",
    response_model=PipelineInfo,
    summary="Schedule a pipeline again (missed slots follow its catchup)",
    responses=problem_responses(401, 403, 404),
    **scoped(TokenScope.ADMIN),  # type: ignore[arg-type]
)
def unpause_pipeline(name: Name, state: State) -> PipelineInfo:
    """Unpause the pipeline's schedule and triggers."""
    return _set_paused(state, name, False)


def _bound(field: str, text: str) -> date | datetime:
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    raise SpecError(
        f"'{field}' takes a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM), got {text!r}",
        field=field,
    )


@router.post(
    "/{name}/backfill",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BackfillAccepted,
    summary="Replay a range of slots (a 'batchpilot backfill' process supervised by serve)",
    responses=problem_responses(400, 401, 403, 404, 422),
    **scoped(TokenScope.ADMIN),  # type: ignore[arg-type]
)
def backfill_pipeline(name: Name, body: BackfillRequest, state: State) -> BackfillAccepted:
    """Start ``batchpilot backfill`` for the pipeline's file in a process of its own (its
    runs and progress are in the store: ``batchpilot backfill list``)."""
    if state.commands is None:
        raise Problem(400, "this server does not start backfills", slug="not-supported")
    entry = _entry(state, name)
    spec = _spec(state, name)
    start, end = _bound("start", body.start), _bound("end", body.end)
    if type(start) is type(end) and start > end:  # type: ignore[operator]
        raise SpecError(f"'start' ({body.start}) is after 'end' ({body.end})", field="start")
    if spec.schedule is None:
        raise SpecError(
            f"pipeline '{name}' has no schedule; backfill it with the CLI's --every",
            field="name",
        )
    args = ["backfill", str(entry.path), "--start", body.start, "--end", body.end]
    pid = state.commands.start_command(
        f"backfill-{name}", [*args, "--concurrency", str(body.concurrency)]
    )
    return BackfillAccepted(
        pipeline=name, start=body.start, end=body.end, concurrency=body.concurrency, pid=pid
    )


__all__ = ["PipelineNotFound", "router"]
