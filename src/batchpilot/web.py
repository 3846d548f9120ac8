"""What ``batchpilot serve`` answers over HTTP: the REST API with the dashboard at ``/``.

The composition root of the web side (as :mod:`batchpilot.executors` is the
engine's): :mod:`batchpilot.api` and :mod:`batchpilot.ui` do not know each
other; this module builds the API app, mounts the dashboard on it, and gives the
dashboard's buttons ``serve``'s way of running work — queued for its workers
(retry, resume) or in a supervised process (compensate), never in a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from fastapi import FastAPI

from batchpilot.api.app import create_app
from batchpilot.engine import RunService
from batchpilot.errors import ActionUnavailable
from batchpilot.executors import default_executors
from batchpilot.scheduler.catalog import CatalogEntry
from batchpilot.scheduler.commands import CommandSupervisor
from batchpilot.scheduler.components import ServeContext
from batchpilot.store import RunStore
from batchpilot.ui.actions import Dispatch, RunAction
from batchpilot.ui.context import DashboardContext, DashboardSettings, OpenAlert
from batchpilot.ui.router import mount_dashboard

#: the actions after which a run waits in the queue for the dispatcher
_QUEUEING = frozenset({RunAction.EXECUTE, RunAction.RETRY, RunAction.RESUME})


def serve_dispatch(
    service: RunService,
    commands: CommandSupervisor | None,
    runs_queued: threading.Event | None = None,
) -> Dispatch:
    """How the dashboard's buttons reach ``serve``'s workers: a retry or resume marks the
    run queued (the dispatcher starts a worker), a compensation runs as a supervised
    ``batchpilot compensate`` process, a triggered run is already queued. A queued run
    sets ``runs_queued``, so the dispatcher starts it at once."""

    def dispatch(action: RunAction, run_id: str) -> None:
        if action is RunAction.COMPENSATE:
            if commands is None:
                raise ActionUnavailable(
                    f"this server starts no side processes; run: batchpilot compensate {run_id}",
                    action=action.value,
                    run_id=run_id,
                )
            commands.start_command(f"compensate-{run_id}", ["compensate", run_id])
            return
        if action is RunAction.RETRY:
            service.queue_retry(run_id)
        elif action is RunAction.RESUME:
            service.queue_resume(run_id)
        if runs_queued is not None and action in _QUEUEING:
            runs_queued.set()

    return dispatch


def open_alerts(store: RunStore) -> Callable[[], list[OpenAlert]]:
    """The overview's list of open alert episodes, newest first."""

    def read() -> list[OpenAlert]:
        return [
            OpenAlert(
                title=f"{record.rule}: {record.observed} (threshold {record.threshold})",
                pipeline=record.pipeline,
                severity=record.severity,
                since=record.opened_at,
                href=f"/runs/{record.last_run_id or record.run_id}"
                if (record.last_run_id or record.run_id)
                else None,
            )
            for record in store.alerts.list(open_only=True, limit=50)
        ]

    return read


def serve_web_app(
    context: ServeContext,
    *,
    entries: Callable[[], list[CatalogEntry]],
    scheduling: bool,
    commands: CommandSupervisor | None,
    cors_origins: Sequence[str] = (),
    dashboard: DashboardSettings | None = None,
) -> FastAPI:
    """The API (``/api/v1``, ``/metrics``, ``/health``) with the dashboard at ``/``.
    Raises :class:`BatchpilotError` for an unknown ``BATCHPILOT_TIMEZONE``."""
    dashboard = dashboard or DashboardSettings.from_env()
    app = create_app(
        context,
        entries=entries,
        scheduling=scheduling,
        commands=commands,
        cors_origins=cors_origins,
        timezone=dashboard.timezone.key,
    )
    service = RunService(
        settings=context.settings, store=context.store, executors=default_executors()
    )
    mount_dashboard(
        app,
        DashboardContext(
            store=context.store,
            service=service,
            settings=dashboard,
            pipelines=entries,
            alerts=open_alerts(context.store),
            dispatch=serve_dispatch(service, commands, context.runs_queued),
        ),
    )
    return app


__all__ = ["open_alerts", "serve_dispatch", "serve_web_app"]
