"""The one place HTTP errors are made: RFC 9457 problem details from batchpilot's error tree.

Every error a route lets through becomes ``application/problem+json`` with
``type``, ``title``, ``status``, ``detail`` and ``instance`` (the request's
path). :data:`STATUS_BY_ERROR` maps the error tree (first match wins, so a
subclass is listed before its family); request validation errors name the
field; anything unexpected is a 500 that says only that, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from batchpilot.airflow.errors import (
    AirflowAuthError,
    AirflowConfigError,
    AirflowError,
    AirflowNotFound,
)
from batchpilot.engine import UnknownExecutor
from batchpilot.errors import (
    BatchpilotError,
    ConnectionError,
    RunNotFound,
    RunStateError,
    SpecError,
    SpecErrors,
    StoreError,
    TokenError,
    first_line,
)
from batchpilot.scheduler.catalog import PipelineNotFound

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:batchpilot:problem:"

log = logging.getLogger("batchpilot.api")

#: (error class, HTTP status, problem type slug), first match wins.
STATUS_BY_ERROR: tuple[tuple[type[BatchpilotError], int, str], ...] = (
    (PipelineNotFound, 404, "pipeline-not-found"),
    (RunNotFound, 404, "run-not-found"),
    (SpecError, 422, "invalid-input"),
    (ConnectionError, 422, "invalid-connection"),
    (UnknownExecutor, 400, "unknown-executor"),
    (RunStateError, 409, "run-state-conflict"),
    (TokenError, 400, "invalid-token-request"),
    (AirflowNotFound, 404, "airflow-not-found"),
    # this server cannot run on Airflow until BATCHPILOT_AIRFLOW_* is set: not the client's fault
    # in the request, but a state of the server it can read and have fixed (not a 5xx)
    (AirflowConfigError, 409, "airflow-not-configured"),
    (AirflowAuthError, 502, "airflow-login-failed"),
    (AirflowError, 502, "airflow-error"),
    (StoreError, 503, "store-unavailable"),
)

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


class Problem(Exception):
    """An HTTP error raised by a route or dependency, rendered as problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A ``application/problem+json`` response for ``request``."""
    body = {
        "type": TYPE_PREFIX + slug,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_for_error(exc: BatchpilotError) -> Problem:
    """The problem a batchpilot error is over HTTP (400 for an error not listed)."""
    for kind, status, slug in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            extra: dict[str, Any] = {}
            if isinstance(exc, SpecError):
                extra["errors"] = [_spec_problem(e) for e in _spec_errors(exc)]
            return Problem(status, str(exc), slug=slug, extra=extra)
    return Problem(400, str(exc), slug="batchpilot-error")


def _spec_errors(exc: SpecError) -> list[SpecError]:
    return list(exc.errors) if isinstance(exc, SpecErrors) else [exc]


def _spec_problem(exc: SpecError) -> dict[str, Any]:
    return {"field": exc.field, "node": exc.node_id, "message": exc.reason}


def _validation_field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body",)]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app raises as problem details."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, slug=exc.slug, headers=exc.headers, extra=exc.extra
        )

    @app.exception_handler(BatchpilotError)
    async def _batchpilot(request: Request, exc: BatchpilotError) -> JSONResponse:
        problem = problem_for_error(exc)
        return problem_response(
            request, problem.status, problem.detail, slug=problem.slug, extra=problem.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _validation_field(tuple(e.get("loc", ()))), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(
                request, 400, "the request body is not valid JSON", slug="invalid-json"
            )
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            request, 422, detail, slug="invalid-request", extra={"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        return problem_response(
            request,
            exc.status_code,
            detail,
            slug=_TITLES.get(exc.status_code, "error").lower().replace(" ", "-"),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s: %s", request.url.path, first_line(exc))
        return problem_response(
            request,
            500,
            "the server met an unexpected error; its log says more",
            slug="internal-error",
        )


__all__ = [
    "PROBLEM_JSON",
    "STATUS_BY_ERROR",
    "Problem",
    "install_problem_handlers",
    "problem_for_error",
    "problem_response",
]
