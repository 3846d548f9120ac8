"""Logging in to the dashboard over real HTTP: the session cookie's flags, CSRF on every
form, scopes, and a revoked token ending its sessions."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.ui.conftest import Dashboard, csrf_of, log_in


def test_pages_need_a_login_and_send_the_browser_to_the_login_form(dashboard: Dashboard) -> None:
    with dashboard.client() as client:
        for path in ("/", "/runs", "/pipelines", "/runs/nope", "/ui/events"):
            response = client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=")


def test_login_sets_a_strict_httponly_session_cookie_and_logout_ends_it(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str]
) -> None:
    secret = make_token("alice", TokenScope.READ)
    with dashboard.client() as client:
        response = log_in(client, secret)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("bp_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http on 127.0.0.1
        assert secret not in cookie

        overview = client.get("/")
        assert overview.status_code == 200
        assert "token <strong>alice</strong> (read)" in overview.text

        logout = client.post("/logout", data={"csrf": csrf_of(overview.text)})
        assert logout.status_code == 303
        assert logout.headers["location"] == "/login"
        assert (
            'bp_session=""' in logout.headers["set-cookie"]
            or "Max-Age=0" in (logout.headers["set-cookie"])
        )
        assert client.get("/").status_code == 303


def test_the_session_cookie_is_secure_when_the_request_came_by_https(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str]
) -> None:
    """uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a TLS proxy in front of serve)."""
    secret = make_token("proxied", TokenScope.READ)
    with dashboard.client() as client:
        form = client.get("/login")  # over http: the login form's cookie is not Secure
        client.headers["X-Forwarded-Proto"] = "https"
        response = client.post(
            "/login", data={"token": secret, "csrf": csrf_of(form.text), "next": "/"}
        )
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


def test_a_wrong_token_is_refused_with_the_form_again(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str]
) -> None:
    make_token("bob", TokenScope.ADMIN)
    with dashboard.client() as client:
        response = log_in(client, "bp_not-a-real-token")
        assert response.status_code == 401
        assert "unknown, revoked or expired" in response.text
        assert "bp_session" not in response.headers.get("set-cookie", "")


def test_a_login_post_without_the_forms_csrf_token_is_refused(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str]
) -> None:
    secret = make_token("carol", TokenScope.READ)
    with dashboard.client() as client:
        response = client.post("/login", data={"token": secret, "csrf": "guess"})
        assert response.status_code == 403
        assert "bp_session" not in response.headers.get("set-cookie", "")


def test_form_posts_without_the_sessions_csrf_token_are_refused(
    dashboard: Dashboard,
    make_token: Callable[[str, TokenScope], str],
    run_pipeline: Callable[..., str],
    run_store: RunStore,
    tmp_path: Path,
) -> None:
    run_id = run_pipeline("flaky", marker=str(tmp_path / "marker"))
    assert run_store.get_run(run_id).status.value == "failed"
    paused_before = run_store.schedules.schedule_states()
    secret = make_token("dave", TokenScope.ADMIN)
    with dashboard.client() as client:
        log_in(client, secret)
        for path, data in (
            (f"/runs/{run_id}/retry", {}),
            (f"/runs/{run_id}/retry", {"csrf": "forged"}),
            ("/pipelines/ui_sleepy/pause", {"csrf": "forged"}),
            ("/pipelines/ui_sleepy/trigger", {"csrf": ""}),
            ("/logout", {"csrf": "forged"}),
        ):
            response = client.post(path, data=data)
            assert response.status_code == 403, path
            assert "CSRF check failed" in response.text
    assert run_store.get_run(run_id).status.value == "failed"
    assert run_store.schedules.schedule_states() == paused_before


def test_a_read_token_can_look_but_not_press_the_buttons(
    dashboard: Dashboard,
    make_token: Callable[[str, TokenScope], str],
    run_pipeline: Callable[..., str],
    run_store: RunStore,
    tmp_path: Path,
) -> None:
    run_id = run_pipeline("flaky", marker=str(tmp_path / "marker"))
    runs_before = len(run_store.list_runs(limit=1000))
    secret = make_token("reader", TokenScope.READ)
    with dashboard.client() as client:
        log_in(client, secret)
        page = client.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert re.search(r'data-action="retry" disabled', page.text)
        csrf = csrf_of(page.text)
        for path in (f"/runs/{run_id}/retry", f"/runs/{run_id}/resume"):
            refused = client.post(path, data={"csrf": csrf})
            assert refused.status_code == 403
            assert "has the 'read' scope; this needs 'run'" in html.unescape(refused.text)
        trigger = client.post("/pipelines/ui_sleepy/trigger", data={"csrf": csrf})
        assert trigger.status_code == 403
    assert run_store.get_run(run_id).status.value == "failed"
    assert len(run_store.list_runs(limit=1000)) == runs_before


def test_a_run_token_cannot_pause_a_schedule_but_an_admin_token_can(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str], run_store: RunStore
) -> None:
    runner, admin = make_token("runner", TokenScope.RUN), make_token("root", TokenScope.ADMIN)
    paused_before = run_store.schedules.schedule_states()
    with dashboard.client() as client:
        log_in(client, runner)
        csrf = csrf_of(client.get("/pipelines/ui_sleepy").text)
        assert client.post("/pipelines/ui_sleepy/pause", data={"csrf": csrf}).status_code == 403
    assert run_store.schedules.schedule_states() == paused_before
    with dashboard.client() as client:
        log_in(client, admin)
        csrf = csrf_of(client.get("/pipelines/ui_sleepy").text)
        response = client.post("/pipelines/ui_sleepy/pause", data={"csrf": csrf})
        assert response.status_code == 303
        page = client.get("/pipelines/ui_sleepy")
        assert "⏸️ yes" in page.text
        assert "ui_sleepy: paused" in page.text
        client.post("/pipelines/ui_sleepy/unpause", data={"csrf": csrf_of(page.text)})
        assert "▶️ no" in client.get("/pipelines/ui_sleepy").text
    (state,) = run_store.schedules.schedule_states()
    assert state.pipeline == "ui_sleepy" and not state.paused


def test_revoking_the_token_logs_its_sessions_out_on_the_next_request(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str], run_store: RunStore
) -> None:
    secret = make_token("temp", TokenScope.RUN)
    with dashboard.client() as client:
        log_in(client, secret)
        assert client.get("/").status_code == 200
        run_store.tokens.revoke("temp")
        response = client.get("/")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")


def test_login_only_returns_to_a_path_on_this_server(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str]
) -> None:
    secret = make_token("eve", TokenScope.READ)
    with dashboard.client() as client:
        form = client.get("/login?next=//evil.example/x")
        assert 'name="next" value="/"' in form.text
        response = client.post(
            "/login",
            data={"token": secret, "csrf": csrf_of(form.text), "next": "https://evil.example"},
        )
        assert response.headers["location"] == "/"


def test_a_log_path_outside_the_runs_folder_is_never_read(
    dashboard: Dashboard,
    make_token: Callable[[str, TokenScope], str],
    run_store: RunStore,
    tmp_path: Path,
) -> None:
    """A store row pointing a log at another file (a forged or corrupted path) shows
    the path refused, not the file."""
    secret_file = tmp_path / "not-a-log.txt"
    secret_file.write_text("db password: hunter2\n")
    run_store.create_run(
        run_id="forged-log-run",
        pipeline="forged",
        spec={"name": "forged", "nodes": [{"id": "t", "type": "empty"}]},
        params={},
        ds="2026-11-30",
        source_path=None,
        task_ids=["t"],
    )
    run_store.start_attempt("forged-log-run", "t", 1, log_path=str(secret_file))
    escaping = dashboard.home / "runs" / "forged-log-run" / ".." / ".." / secret_file.name
    run_store.start_attempt("forged-log-run", "t", 2, log_path=str(escaping))
    with dashboard.client() as client:
        log_in(client, make_token("log-reader", TokenScope.ADMIN))
        page = html.unescape(client.get("/runs/forged-log-run").text)
    assert "hunter2" not in page
    assert page.count("is outside the run's folder") == 2
