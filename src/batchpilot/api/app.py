"""The REST API: one FastAPI app over ``serve``'s context, under ``/api/v1``.

::

    app = create_app(context, entries=scheduler.entries, scheduling=True)

Routes reach runs only through the engine's services and the store; every
error becomes problem details in :mod:`batchpilot.api.problems`. Other
packages plug in here, by the keyword arguments of :func:`create_app`:
``routers`` (the dashboard at ``/``: :mod:`batchpilot.web` composes both) and
``event_sources`` (alerts on ``/api/v1/events``). The monitor's ``/api/v1/alerts``,
``/api/v1/stats`` and ``/metrics`` are :mod:`batchpilot.api.routes_monitor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

import batchpilot.api.routes_events as routes_events
import batchpilot.api.routes_executions as routes_executions
import batchpilot.api.routes_logs as routes_logs
import batchpilot.api.routes_monitor as routes_monitor
import batchpilot.api.routes_pipelines as routes_pipelines
from batchpilot.api.events import EventFeed, EventSourceFactory, RunChanges
from batchpilot.api.problems import install_problem_handlers
from batchpilot.api.routes_events import package_version
from batchpilot.api.state import ApiState
from batchpilot.engine import RunService
from batchpilot.executors import default_executors
from batchpilot.scheduler.catalog import CatalogEntry
from batchpilot.scheduler.commands import CommandSupervisor
from batchpilot.scheduler.components import ServeContext
from batchpilot.shared_poll import SharedPoll

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"


def create_app(
    context: ServeContext,
    *,
    entries: Callable[[], list[CatalogEntry]],
    scheduling: bool = True,
    commands: CommandSupervisor | None = None,
    cors_origins: Sequence[str] = (),
    routers: Sequence[APIRouter] = (),
    event_sources: Sequence[EventSourceFactory] = (),
    poll_s: float = 0.5,
    timezone: str = "UTC",
) -> FastAPI:
    """The API app for one ``serve``.

    ``entries`` gives the pipeline files as ``serve`` last read them;
    ``commands`` starts backfills and compensations in their own processes
    (``None``: those routes answer 400); ``cors_origins`` allows browsers on
    those origins (none by default: no CORS headers at all); ``routers`` are
    mounted as they are (their own prefixes); ``event_sources`` add to the
    run and task events; ``timezone`` is the IANA zone "today" is read in (``/stats``).
    """
    app = FastAPI(
        title="batchpilot",
        version=package_version(),
        summary="Execute, watch and control batchpilot pipelines",
        openapi_url=OPENAPI_URL,
        docs_url=None,  # Swagger UI would load scripts from the internet
        redoc_url=None,
    )
    app.state.api = ApiState(
        settings=context.settings,
        store=context.store,
        service=RunService(
            settings=context.settings, store=context.store, executors=default_executors()
        ),
        entries=entries,
        scheduling=scheduling,
        stopping=context.stopping,
        runs_queued=context.runs_queued,
        commands=commands,
        poll_s=poll_s,
        timezone=timezone,
    )
    # every /api/v1/events stream is fed by one feed that looks at the store each poll_s
    feed = EventFeed([make(context.store) for make in (RunChanges, *event_sources)])
    app.state.events = SharedPoll(feed.changes, interval_s=poll_s)
    install_problem_handlers(app)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    for module in (routes_pipelines, routes_executions, routes_logs, routes_events):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(routes_monitor.router)  # /api/v1/alerts, /api/v1/stats, /metrics
    app.add_api_route("/health", routes_events.health, include_in_schema=False)
    for router in routers:  # e.g. the dashboard at /
        app.include_router(router)
    return app


__all__ = ["API_PREFIX", "OPENAPI_URL", "create_app"]
