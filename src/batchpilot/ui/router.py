"""The dashboard's routes: login, overview, runs, run page, pipelines, buttons, events.

:func:`dashboard_router` builds them over a :class:`DashboardContext`; pages are
rendered by :mod:`batchpilot.ui.rendering` from what the ``*_view`` modules gather.
Every page needs a session (see :mod:`batchpilot.ui.auth`); every form post carries
the session's CSRF token and needs its scope (403 page otherwise).
"""

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from batchpilot.engine import new_run_id
from batchpilot.errors import BatchpilotError, RunNotFound, SpecError
from batchpilot.monitor.overview import day_overview, day_window, load_overview, unpaused
from batchpilot.scheduler.describe import pipeline_rows
from batchpilot.scheduler.slots import next_slot
from batchpilot.spec.dates import parse_logical_date
from batchpilot.spec.params import ParamText
from batchpilot.states import RunStatus
from batchpilot.store.run_queries import InvalidCursor, RunCursor, RunFilter
from batchpilot.store.tokens import TokenScope
from batchpilot.ui.actions import RunAction, perform
from batchpilot.ui.auth import (
    Gate,
    Viewer,
    clear_session_cookie,
    login_csrf,
    safe_next,
    set_login_csrf_cookie,
    set_session_cookie,
)
from batchpilot.ui.context import DashboardContext
from batchpilot.ui.events import change_events, shared_marks
from batchpilot.ui.pipeline_view import pipeline_view
from batchpilot.ui.rendering import Pages
from batchpilot.ui.run_view import run_view
from batchpilot.ui.sessions import SessionRegistry

STATIC_PATH = "/ui/static"
STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
NEXT_SCHEDULED = 10


def dashboard_static() -> StaticFiles:
    """The dashboard's CSS and script, to mount at :data:`STATIC_PATH`."""
    return StaticFiles(directory=str(STATIC_DIR))


def mount_dashboard(app: FastAPI, context: DashboardContext) -> None:
    """Add the dashboard's pages at ``/`` and its assets at :data:`STATIC_PATH` to ``app``."""
    app.include_router(dashboard_router(context))
    app.mount(STATIC_PATH, dashboard_static(), name="dashboard-static")


class _Dashboard:
    """The state the routes share: context, sessions, the gate, the templates."""

    def __init__(self, context: DashboardContext) -> None:
        self.context = context
        self.store = context.store
        self.sessions = SessionRegistry(
            idle=timedelta(minutes=context.settings.session_idle_minutes)
        )
        self.gate = Gate(context.store, self.sessions, context.clock)
        self.pages = Pages(context.settings.timezone)

    def today(self) -> date:
        return self.context.clock().astimezone(self.context.settings.timezone).date()

    def page(
        self, request: Request, viewer: Viewer, name: str, status_code: int = 200, **values: object
    ) -> HTMLResponse:
        notice = self.sessions.take_notice(viewer.session.session_id)
        return self.pages.render(request, name, status_code, viewer=viewer, notice=notice, **values)

    def problem(self, request: Request, viewer: Viewer | None, status: int, text: str) -> Response:
        """An error page: what went wrong, as a sentence (4xx)."""
        if viewer is None:
            return self.pages.render(request, "error.html", status, viewer=None, message=text)
        return self.page(request, viewer, "error.html", status, message=text)

    def refused(
        self, request: Request, viewer: Viewer, csrf: str | None, scope: TokenScope
    ) -> Response | None:
        """The 403 page when the form's CSRF token is wrong or the token's scope too small;
        None when the post may proceed."""
        if not viewer.session.csrf_matches(csrf):
            return self.problem(
                request,
                viewer,
                403,
                "This form is out of date or was not sent by this dashboard (CSRF check "
                "failed). Reload the page and try again.",
            )
        if not viewer.can(scope):
            return self.problem(
                request,
                viewer,
                403,
                f"Your token '{viewer.token.name}' has the '{viewer.token.scope.value}' scope; "
                f"this needs '{scope.value}'. Log in with a token of that scope.",
            )
        return None


def dashboard_router(context: DashboardContext) -> APIRouter:
    """The dashboard's pages as a router to include at ``/`` (assets: :func:`dashboard_static`)."""
    d = _Dashboard(context)
    router = APIRouter(include_in_schema=False)
    CurrentViewer = Annotated[Viewer, Depends(d.gate.viewer)]
    marks = shared_marks(d.store)  # what the open pages follow, one look per interval

    # -- login ----------------------------------------------------------------------------

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:
        csrf = login_csrf(request)
        response = d.pages.render(
            request, "login.html", viewer=None, csrf=csrf, next=safe_next(next), error=None
        )
        set_login_csrf_cookie(response, request, csrf)
        return response

    @router.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        token: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        expected = request.cookies.get("bp_login_csrf")
        if not expected or csrf != expected:
            return d.problem(
                request, None, 403, "The login form is out of date (CSRF check failed): reload it."
            )
        session = d.gate.log_in(token)
        if session is None:
            response = d.pages.render(
                request,
                "login.html",
                401,
                viewer=None,
                csrf=expected,
                next=safe_next(next),
                error="This token is unknown, revoked or expired.",
            )
            return response
        response = RedirectResponse(safe_next(next), status_code=303)
        set_session_cookie(response, request, session)
        return response

    @router.post("/logout")
    def logout(
        request: Request, viewer: CurrentViewer, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        refused = d.refused(request, viewer, csrf, TokenScope.READ)
        if refused is not None:
            return refused
        d.sessions.close(viewer.session.session_id)
        response = RedirectResponse("/login", status_code=303)
        clear_session_cookie(response, request)
        return response

    # -- overview ---------------------------------------------------------------------------

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, viewer: CurrentViewer, day: str | None = None) -> Response:
        try:
            chosen = date.fromisoformat(day) if day else d.today()
        except ValueError:
            return d.problem(request, viewer, 400, f"day must be YYYY-MM-DD, got {day!r}")
        now = context.clock()
        window = day_window(chosen, context.settings.timezone)
        specs = [e.spec for e in context.pipelines() if e.spec is not None]
        stats = day_overview(d.store, specs, window, now)
        active = unpaused(d.store, specs)
        upcoming = sorted(
            (
                (spec.name, slot)
                for spec in active
                if spec.schedule is not None and (slot := next_slot(spec.schedule, now)) is not None
            ),
            key=lambda item: item[1].at,
        )[:NEXT_SCHEDULED]
        alerts = context.alerts() if context.alerts is not None else None
        return d.page(
            request,
            viewer,
            "overview.html",
            stats=stats,
            day=chosen,
            is_today=chosen == d.today(),
            previous_day=chosen - timedelta(days=1),
            next_day=chosen + timedelta(days=1),
            upcoming=upcoming,
            alerts=alerts,
            events_url="/ui/events",
        )

    # -- runs -------------------------------------------------------------------------------

    @router.get("/runs", response_class=HTMLResponse)
    def runs_list(
        request: Request,
        viewer: CurrentViewer,
        pipeline: str | None = None,
        status: str | None = None,
        day: str | None = None,
        slow: bool = False,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    ) -> Response:
        try:
            chosen = date.fromisoformat(day) if day else None
            wanted = RunStatus(status) if status else None
            after = RunCursor.decode(cursor) if cursor else None
        except (ValueError, InvalidCursor) as exc:
            return d.problem(request, viewer, 400, _bad_filter(exc, status, day))
        window = day_window(chosen, context.settings.timezone) if chosen else None
        next_cursor = None
        if slow:
            if window is None:
                return d.problem(request, viewer, 400, "the slow filter needs a day (day=...)")
            stats = load_overview(d.store, window, pipeline=pipeline or None, shown=0)
            runs = list(reversed(d.store.queries.runs_by_id(stats.slow_run_ids())))
        else:
            where = RunFilter(
                pipeline=pipeline or None,
                statuses=(wanted,) if wanted else (),
                created_from=window.start if window else None,
                created_until=window.end if window else None,
            )
            page = d.store.queries.page(where, after=after, limit=limit)
            runs, next_cursor = page.runs, page.next_cursor
        filters = {
            "pipeline": pipeline or "",
            "status": status or "",
            "day": day or "",
            "slow": "1" if slow else "",
        }
        return d.page(
            request,
            viewer,
            "runs.html",
            runs=runs,
            filters=filters,
            statuses=[s.value for s in RunStatus],
            next_cursor=next_cursor.encode() if next_cursor else None,
            limit=limit,
            now=context.clock(),
            events_url="/ui/events",
        )

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, viewer: CurrentViewer, run_id: str) -> Response:
        try:
            view = run_view(context.service, run_id, context.clock())
        except RunNotFound:
            return d.problem(request, viewer, 404, f"no run has the id {run_id!r}")
        return d.page(
            request,
            viewer,
            "run.html",
            view=view,
            can_act=viewer.can(TokenScope.RUN),
            events_url=f"/ui/events?run={view.run.run_id}",
        )

    @router.post("/runs/{run_id}/{action}")
    def run_action(
        request: Request,
        viewer: CurrentViewer,
        run_id: str,
        action: str,
        csrf: Annotated[str, Form()] = "",
    ) -> Response:
        refused = d.refused(request, viewer, csrf, TokenScope.RUN)
        if refused is not None:
            return refused
        try:
            chosen = RunAction(action)
        except ValueError:
            return d.problem(request, viewer, 404, f"no button named {action!r}")
        if chosen is RunAction.EXECUTE:
            return d.problem(request, viewer, 404, f"no button named {action!r}")
        try:
            notice = perform(context.service, chosen, run_id, context.dispatch)
        except RunNotFound:
            return d.problem(request, viewer, 404, f"no run has the id {run_id!r}")
        except BatchpilotError as exc:
            notice = f"{chosen.value} refused: {exc}"
        d.sessions.notify(viewer.session.session_id, notice)
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    # -- pipelines --------------------------------------------------------------------------

    @router.get("/pipelines", response_class=HTMLResponse)
    def pipelines_list(request: Request, viewer: CurrentViewer) -> Response:
        rows = pipeline_rows(context.pipelines(), d.store, context.clock())
        return d.page(request, viewer, "pipelines.html", rows=rows, events_url="/ui/events")

    @router.get("/pipelines/{name}", response_class=HTMLResponse)
    def pipeline_page(request: Request, viewer: CurrentViewer, name: str) -> Response:
        view = pipeline_view(d.store, context.pipelines(), name, context.clock())
        if view is None:
            return d.problem(request, viewer, 404, f"no pipeline named {name!r}")
        return d.page(
            request,
            viewer,
            "pipeline.html",
            view=view,
            can_run=viewer.can(TokenScope.RUN),
            can_admin=viewer.can(TokenScope.ADMIN),
            today=d.today(),
            events_url="/ui/events",
        )

    @router.post("/pipelines/{name}/pause")
    def pause(
        request: Request, viewer: CurrentViewer, name: str, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        return _set_paused(request, viewer, name, csrf, True)

    @router.post("/pipelines/{name}/unpause")
    def unpause(
        request: Request, viewer: CurrentViewer, name: str, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        return _set_paused(request, viewer, name, csrf, False)

    def _set_paused(
        request: Request, viewer: Viewer, name: str, csrf: str, paused: bool
    ) -> Response:
        refused = d.refused(request, viewer, csrf, TokenScope.ADMIN)
        if refused is not None:
            return refused
        if pipeline_view(d.store, context.pipelines(), name, context.clock()) is None:
            return d.problem(request, viewer, 404, f"no pipeline named {name!r}")
        reason = f"paused from the dashboard by token '{viewer.token.name}'" if paused else None
        d.store.schedules.set_paused(name, paused, reason=reason)
        word = "paused" if paused else "unpaused (missed slots follow its catchup policy)"
        d.sessions.notify(viewer.session.session_id, f"{name}: {word}")
        return RedirectResponse(f"/pipelines/{name}", status_code=303)

    @router.post("/pipelines/{name}/trigger")
    async def trigger(request: Request, viewer: CurrentViewer, name: str) -> Response:
        form = await request.form()  # the params' fields are named by the pipeline
        values = {key: _text(value) for key, value in form.multi_items()}
        return await run_in_threadpool(_trigger, request, viewer, name, values)

    def _trigger(request: Request, viewer: Viewer, name: str, form: dict[str, str]) -> Response:
        refused = d.refused(request, viewer, form.get("csrf"), TokenScope.RUN)
        if refused is not None:
            return refused
        entry = next((e for e in context.pipelines() if e.spec and e.name == name), None)
        if entry is None or entry.spec is None:
            return d.problem(request, viewer, 404, f"serve knows no valid pipeline {name!r}")
        params = {
            key.removeprefix("param:"): ParamText(value)
            for key, value in form.items()
            if key.startswith("param:") and value.strip()
        }
        try:
            raw_date = form.get("date", "").strip()
            ds = parse_logical_date(raw_date) if raw_date else d.today().isoformat()
            claim = context.service.queue(entry.spec, run_id=new_run_id(), ds=ds, params=params)
        except SpecError as exc:  # SpecErrors too: nothing was recorded
            d.sessions.notify(viewer.session.session_id, f"not triggered: {exc}")
            return RedirectResponse(f"/pipelines/{name}", status_code=303)
        try:
            context.dispatch(RunAction.EXECUTE, claim.run_id)
        except BatchpilotError as exc:
            d.sessions.notify(viewer.session.session_id, f"queued, but: {exc}")
        else:
            d.sessions.notify(viewer.session.session_id, f"queued run {claim.run_id} of {name}")
        return RedirectResponse(f"/runs/{claim.run_id}", status_code=303)

    # -- live -------------------------------------------------------------------------------

    @router.get("/ui/events")
    def events(request: Request, viewer: CurrentViewer, run: str | None = None) -> Response:
        session_id = viewer.session.session_id

        async def still_allowed() -> bool:
            if await request.is_disconnected():
                return False
            current = d.gate.viewer_or_none(request)
            return current is not None and current.session.session_id == session_id

        stream = change_events(marks, run or None, still_allowed=still_allowed)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _bad_filter(exc: Exception, status: str | None, day: str | None) -> str:
    if isinstance(exc, InvalidCursor):
        return str(exc)
    if status and status not in RunStatus._value2member_map_:
        choices = ", ".join(s.value for s in RunStatus)
        return f"status must be one of {choices}, got {status!r}"
    return f"day must be YYYY-MM-DD, got {day!r}"


__all__ = ["STATIC_PATH", "dashboard_router", "dashboard_static", "mount_dashboard"]
