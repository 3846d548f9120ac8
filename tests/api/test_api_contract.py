"""The API's contract, called in process over a real SQLite store: who may call each route,
how errors read (problem details naming the field), paging, and where logs may be read."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import update

from batchpilot.api import (
    routes_events,
    routes_executions,
    routes_logs,
    routes_monitor,
    routes_pipelines,
)
from batchpilot.api.auth import SCOPE_EXTENSION
from batchpilot.engine import RunService
from batchpilot.pipeline import load_pipeline
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store.tables import attempts, runs
from batchpilot.store.tokens import TokenScope
from tests.api.conftest import InProcessApi

OPEN_ROUTES = {"/health", "/api/v1/health"}
SMALLER = {"run": "read", "admin": "run"}


def _operations(app) -> list[tuple[str, str, str]]:
    """(method, path, scope) of every operation the app publishes that needs a token; the
    OpenAPI document is built from every route, so a new route cannot escape this list."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if path in OPEN_ROUTES:
                assert SCOPE_EXTENSION not in operation
                continue
            scope = operation.get(SCOPE_EXTENSION)
            assert scope, f"{method} {path} names no scope: every route but /health needs one"
            found.append((method.upper(), path, scope))
    return sorted(found)


def test_no_route_is_left_out_of_the_openapi_document(api: InProcessApi):
    for module in (routes_pipelines, routes_executions, routes_logs, routes_events, routes_monitor):
        for route in module.router.routes:
            assert isinstance(route, APIRoute) and route.include_in_schema, route.path


def _concrete(path: str) -> str:
    return path.replace("{name}", "hello").replace("{run_id}", "20260101T000000-aaaaaa")


def test_every_route_but_health_names_the_scope_it_needs(api: InProcessApi):
    operations = _operations(api.app)
    scopes = {(method, path): scope for method, path, scope in operations}
    assert scopes[("GET", "/api/v1/executions")] == "read"
    assert scopes[("POST", "/api/v1/executions/{run_id}/cancel")] == "run"
    assert scopes[("POST", "/api/v1/pipelines/{name}/execute")] == "run"
    assert scopes[("POST", "/api/v1/pipelines/{name}/pause")] == "admin"
    assert scopes[("POST", "/api/v1/pipelines/{name}/backfill")] == "admin"
    document = api.client.get("/api/v1/openapi.json").json()
    for method, path, scope in operations:
        operation = document["paths"][path][method.lower()]
        assert operation[SCOPE_EXTENSION] == scope
        assert operation["security"] == [{"HTTPBearer": []}]


def test_every_route_refuses_no_token_a_wrong_one_a_revoked_one_and_a_smaller_scope(
    api: InProcessApi,
):
    revoked = api.tokens.make("gone", TokenScope.ADMIN)
    api.store.tokens.revoke("gone")
    expired = api.tokens.make("old", TokenScope.ADMIN, expires_in=timedelta(microseconds=1))
    client = api.client
    for method, path, scope in _operations(api.app):
        url = _concrete(path)
        for headers in (
            {},
            {"Authorization": "Bearer bp_not-a-token"},
            {"Authorization": f"Basic {revoked}"},
            {"Authorization": f"Bearer {revoked}"},
            {"Authorization": f"Bearer {expired}"},
        ):
            response = client.request(method, url, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith('Bearer realm="batchpilot"')
            assert response.json()["status"] == 401
        if scope in SMALLER:
            response = client.request(method, url, headers=api.tokens.header(SMALLER[scope]))
            assert response.status_code == 403, (method, path, response.text)
            assert f"needs '{scope}'" in response.json()["detail"]


def test_health_needs_no_token_and_says_whether_serve_schedules(api: InProcessApi):
    body = api.client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["scheduler"] is True and body["version"]
    assert api.client.get("/health").json() == body


def test_execute_checks_params_and_date_and_names_the_field(api: InProcessApi):
    run = api.tokens.header("run")
    post = api.client.post
    wrong_type = post("/api/v1/pipelines/hello/execute", json={"params": {"n": "x"}}, headers=run)
    assert wrong_type.status_code == 422
    assert wrong_type.headers["content-type"] == "application/problem+json"
    problem = wrong_type.json()
    assert problem["errors"][0]["field"] == "params.n"
    assert problem["instance"] == "/api/v1/pipelines/hello/execute"
    bad_date = post("/api/v1/pipelines/hello/execute", json={"date": "31/12"}, headers=run)
    assert bad_date.status_code == 422 and bad_date.json()["errors"][0]["field"] == "date"
    spoofed = {"params": {"__trigger__": {"path": "/etc/passwd"}}}
    reserved = post("/api/v1/pipelines/hello/execute", json=spoofed, headers=run)
    assert reserved.status_code == 422
    assert reserved.json()["errors"][0]["field"] == "params.__trigger__"
    unknown_field = post("/api/v1/pipelines/hello/execute", json={"parms": {}}, headers=run)
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["field"] == "parms"
    not_json = post(
        "/api/v1/pipelines/hello/execute",
        content=b"{bad",
        headers={**run, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400 and not_json.json()["type"].endswith("invalid-json")
    unknown = post("/api/v1/pipelines/nope/execute", json={}, headers=run)
    assert unknown.status_code == 404 and "hello" in unknown.json()["detail"]
    airflow = post("/api/v1/pipelines/hello/execute", json={"on": "airflow"}, headers=run)
    assert airflow.status_code == 409  # this server has no BATCHPILOT_AIRFLOW_* settings
    assert "BATCHPILOT_AIRFLOW_URL" in airflow.json()["detail"]
    assert api.store.list_runs() == []  # nothing recorded for bad input


def test_execute_queues_a_run_and_the_same_idempotency_key_returns_it(api: InProcessApi):
    headers = {**api.tokens.header("run"), "Idempotency-Key": "order-42"}
    url = "/api/v1/pipelines/hello/execute"
    first = api.client.post(url, json={"params": {"n": 3}, "date": "2026-11-30"}, headers=headers)
    again = api.client.post(url, json={"params": {"n": 3}, "date": "2026-11-30"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["status"] == "queued" and first.json()["created"] is True
    assert again.json()["run_id"] == first.json()["run_id"] and again.json()["created"] is False
    other = api.client.post(url, json={}, headers=api.tokens.header("run"))
    assert other.json()["run_id"] != first.json()["run_id"]
    run = api.store.get_run(first.json()["run_id"])
    assert run.status is RunStatus.QUEUED and run.params["n"] == 3 and run.ds == "2026-11-30"


def test_execute_wakes_serve_s_dispatcher_so_the_run_starts_at_once(api: InProcessApi):
    queued = api.context.runs_queued
    assert not queued.is_set()
    url = "/api/v1/pipelines/hello/execute"
    answer = api.client.post(url, json={}, headers=api.tokens.header("run"))
    assert answer.status_code == 202
    assert queued.is_set()  # the dispatcher's wait ends now, not at its next look


def test_a_run_reads_the_same_as_runs_show_output_json(api: InProcessApi):
    service = RunService(settings=api.settings, store=api.store)
    result = service.start(load_pipeline(str(api.folder / "hello.yaml")))
    shown = api.client.get(f"/api/v1/executions/{result.run_id}", headers=api.tokens.header("read"))
    assert shown.status_code == 200
    assert shown.json() == result.to_dict()
    missing = api.client.get("/api/v1/executions/nope", headers=api.tokens.header("read"))
    assert missing.status_code == 404 and missing.json()["type"].endswith("run-not-found")


def _make_runs(api: InProcessApi, count: int, pipeline: str = "hello") -> list[str]:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    ids = []
    for i in range(count):
        run_id = f"2026110{i % 3}T000000-{pipeline[:2]}{i:04x}"
        api.store.create_run(
            run_id=run_id,
            pipeline=pipeline,
            spec={},
            params={},
            ds="2026-11-01",
            source_path=None,
            task_ids=[],
        )
        # two runs share each instant: the run id breaks the tie
        with api.store.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(created_at=base + timedelta(minutes=i // 2))
            )
        ids.append(run_id)
    return ids


def test_executions_page_by_cursor_newest_first_without_gaps_or_repeats(api: InProcessApi):
    _make_runs(api, 7)
    _make_runs(api, 2, pipeline="other")
    read = api.tokens.header("read")
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        params = {"limit": 3, "pipeline": "hello", **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/api/v1/executions", params=params, headers=read).json()
        seen += [item["run_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    stored = {r.run_id: r for r in api.store.list_runs(limit=100, pipeline="hello")}
    keys = [(stored[r].created_at, r) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_executions_filters_bind_their_values(api: InProcessApi):
    _make_runs(api, 4)
    read = api.tokens.header("read")
    get = api.client.get
    injected = get("/api/v1/executions", params={"pipeline": "x' OR '1'='1"}, headers=read)
    assert injected.status_code == 200 and injected.json()["items"] == []
    since = get(
        "/api/v1/executions", params={"since": "2026-11-01T00:01:00+00:00"}, headers=read
    ).json()
    assert len(since["items"]) == 2
    until = get("/api/v1/executions", params={"until": "2026-11-01T00:01:00"}, headers=read)
    assert len(until.json()["items"]) == 2
    queued = get("/api/v1/executions", params={"status": "queued,failed"}, headers=read)
    assert len(queued.json()["items"]) == 4
    bad_status = get("/api/v1/executions", params={"status": "done"}, headers=read)
    assert bad_status.status_code == 422 and bad_status.json()["errors"][0]["field"] == "status"
    bad_cursor = get("/api/v1/executions", params={"cursor": "zzz"}, headers=read)
    assert bad_cursor.status_code == 422 and bad_cursor.json()["errors"][0]["field"] == "cursor"
    naive = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|x").decode()  # no time zone
    assert get("/api/v1/executions", params={"cursor": naive}, headers=read).status_code == 422
    too_many = get("/api/v1/executions", params={"limit": 100000}, headers=read)
    assert too_many.status_code == 422 and "limit" in too_many.json()["detail"]


def test_logs_are_read_only_inside_the_run_folder(api: InProcessApi, tmp_path: Path):
    service = RunService(settings=api.settings, store=api.store)
    result = service.start(load_pipeline(str(api.folder / "hello.yaml")))
    read = api.tokens.header("read")
    url = f"/api/v1/executions/{result.run_id}/logs"
    one = api.client.get(url, params={"task": "a", "attempt": 1}, headers=read)
    assert one.status_code == 200 and "task a (empty), attempt 1" in one.text
    assert int(one.headers["x-next-offset"]) == len(one.content)
    rest = api.client.get(url, params={"task": "a", "attempt": 1, "offset": 10}, headers=read)
    assert rest.content == one.content[10:]
    both = api.client.get(url, headers=read)
    assert "== a attempt 1 (success) ==" in both.text and "== b attempt 1" in both.text
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    with api.store.engine.begin() as conn:
        conn.execute(
            update(attempts)
            .where(attempts.c.run_id == result.run_id, attempts.c.task_id == "a")
            .values(
                log_path=str(
                    api.settings.runs_dir / result.run_id / ".." / ".." / ".." / "secret.txt"
                )
            )
        )
        conn.execute(
            update(attempts)
            .where(attempts.c.run_id == result.run_id, attempts.c.task_id == "b")
            .values(log_path=str(secret))
        )
    escaped = api.client.get(url, headers=read)
    assert escaped.status_code == 200 and "hunter2" not in escaped.text
    unknown_task = api.client.get(url, params={"task": "zzz"}, headers=read)
    assert unknown_task.status_code == 409 and "tasks: a, b" in unknown_task.json()["detail"]
    follow_without_task = api.client.get(url, params={"follow": "true"}, headers=read)
    assert follow_without_task.status_code == 422
    # an attempt that never came, of a run that ended: the stream ends instead of waiting
    never = api.client.get(url, params={"task": "a", "attempt": 9, "follow": "true"}, headers=read)
    assert never.status_code == 200 and never.text == ": keep-alive\n\n"
    ended = api.client.get(url, params={"task": "a", "follow": "true"}, headers=read)
    assert "event: end" in ended.text and '"state":"success"' in ended.text


def test_retry_and_resume_queue_the_run_for_serve_and_refuse_what_they_cannot(api: InProcessApi):
    run = api.tokens.header("run")
    service = RunService(settings=api.settings, store=api.store)
    result = service.start(load_pipeline(str(api.folder / "hello.yaml")))
    url = f"/api/v1/executions/{result.run_id}"
    nothing = api.client.post(f"{url}/retry", headers=run)
    assert nothing.status_code == 409 and "no failed task" in nothing.json()["detail"]
    no_resume = api.client.post(f"{url}/resume", headers=run)
    assert no_resume.status_code == 409 and "only a failed run" in no_resume.json()["detail"]
    unknown = api.client.post(f"{url}/retry", json={"task": "zzz"}, headers=run)
    assert unknown.status_code == 409 and "no task 'zzz'" in unknown.json()["detail"]
    queued = api.client.post(f"{url}/retry", json={"task": "b"}, headers=run)
    assert queued.status_code == 202
    body = queued.json()
    assert body["status"] == "queued"
    assert body["tasks"]["a"]["state"] == "success" and body["tasks"]["b"]["state"] == "pending"
    again = api.client.post(f"{url}/retry", json={"task": "b"}, headers=run)
    assert again.status_code == 409  # queued already: not finished
    compensate = api.client.post(f"{url}/compensate", headers=run)
    assert compensate.status_code == 409


def test_pause_and_unpause_need_admin_and_show_the_pipeline(api: InProcessApi):
    admin = api.tokens.header("admin")
    paused = api.client.post("/api/v1/pipelines/hello/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    listed = api.client.get("/api/v1/pipelines", headers=api.tokens.header("read")).json()
    assert [(p["name"], p["paused"]) for p in listed] == [("hello", True)]
    unpaused = api.client.post("/api/v1/pipelines/hello/unpause", headers=admin)
    assert unpaused.json()["paused"] is False
    assert api.client.post("/api/v1/pipelines/nope/pause", headers=admin).status_code == 404


def test_no_cors_headers_unless_configured(api: InProcessApi):
    preflight = api.client.options(
        "/api/v1/executions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v1/executions/x/nothing"])
def test_unknown_paths_are_problems_too(api: InProcessApi, path: str):
    response = api.client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_backfill_run_is_not_queued_again_over_the_api(api: InProcessApi):
    api.store.create_run(
        run_id="20261101T000000-bf0001",
        pipeline="hello",
        spec={},
        params={},
        ds="2026-11-01",
        source_path=None,
        task_ids=["a"],
        triggered_by=RunTrigger.BACKFILL,
    )
    api.store.set_run_status("20261101T000000-bf0001", RunStatus.FAILED)
    refused = api.client.post(
        "/api/v1/executions/20261101T000000-bf0001/resume", headers=api.tokens.header("run")
    )
    assert refused.status_code == 409 and "belongs to a backfill" in refused.json()["detail"]
    assert api.store.get_run("20261101T000000-bf0001").status is RunStatus.FAILED
