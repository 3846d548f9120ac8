"""The API over real HTTP: a ``batchpilot serve`` subprocess on a free port, httpx as the
client, runs executed by serve's worker processes (never inside a request)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from batchpilot.states import RunStatus
from tests.api.conftest import (
    SERVE,
    LiveServe,
    ServeFactory,
    Tokens,
    standard_tokens,
)
from tests.api.live_pipelines import write_pipelines
from tests.cli_processes import kill_run_owners
from tests.waiting import wait_until

SMALLER = {"run": "read", "admin": "run"}


def _execute(serve: LiveServe, tokens: Tokens, name: str, **body: Any) -> str:
    response = serve.client.post(
        f"/pipelines/{name}/execute", json=body, headers=tokens.header("run")
    )
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def _run(serve: LiveServe, tokens: Tokens, run_id: str) -> dict[str, Any]:
    response = serve.client.get(f"/executions/{run_id}", headers=tokens.header("read"))
    assert response.status_code == 200, response.text
    return response.json()


def _ended(serve: LiveServe, tokens: Tokens, run_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run = _run(serve, tokens, run_id)
        return run if RunStatus(run["status"]).is_terminal() else None

    return wait_until(ended, f"run {run_id} ending", serve.output)


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream; comments skipped."""
    event, data = "message", []
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])


def test_every_route_refuses_401_and_403_over_http(shared_serve):
    serve, tokens = shared_serve
    document = serve.client.get("/openapi.json").json()
    checked = 0
    for path, operations in document["paths"].items():
        url = path.replace("{name}", "hello").replace("{run_id}", "20260101T000000-aaaaaa")
        if url.startswith("/api/v1"):
            url = url.removeprefix("/api/v1")
        else:  # /metrics: at the root
            url = str(serve.client.base_url).split("/api/v1")[0] + url
        for method, operation in operations.items():
            if path == "/api/v1/health":
                assert serve.client.request(method, url).status_code == 200
                continue
            anonymous = serve.client.request(method, url)
            assert anonymous.status_code == 401, (method, path)
            assert anonymous.headers["content-type"] == "application/problem+json"
            scope = operation["x-required-scope"]
            if scope in SMALLER:
                smaller = serve.client.request(method, url, headers=tokens.header(SMALLER[scope]))
                assert smaller.status_code == 403, (method, path)
            checked += 1
    assert checked == 18  # every operation but /health


def test_serve_hosts_the_dashboard_and_the_monitors_routes(shared_serve):
    serve, tokens = shared_serve
    root = str(serve.client.base_url).split("/api/v1")[0]
    overview = serve.client.get(root + "/", follow_redirects=False)
    assert overview.status_code == 303 and overview.headers["location"].startswith("/login")
    login = serve.client.get(root + "/login")
    assert login.status_code == 200 and "<form" in login.text and "token" in login.text
    stats = serve.client.get("/stats", headers=tokens.header("read"))
    assert stats.status_code == 200 and stats.json()["timezone"] == "UTC"
    metrics = serve.client.get(root + "/metrics", headers=tokens.header("read"))
    assert metrics.status_code == 200 and "batchpilot_outbox_backlog" in metrics.text
    assert serve.client.get("/alerts", headers=tokens.header("read")).status_code == 200


def test_execute_is_idempotent_and_a_worker_runs_the_run(shared_serve):
    serve, tokens = shared_serve
    headers = {**tokens.header("run"), "Idempotency-Key": "build-1234"}
    first = serve.client.post(
        "/pipelines/hello/execute", json={"params": {"n": 2}}, headers=headers
    )
    again = serve.client.post(
        "/pipelines/hello/execute", json={"params": {"n": 2}}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]
    run_id = first.json()["run_id"]
    run = _ended(serve, tokens, run_id)
    assert run["status"] == "success" and set(run["tasks"]) == {"a", "b"}
    page = serve.client.get(
        "/executions", params={"pipeline": "hello", "limit": 50}, headers=tokens.header("read")
    ).json()
    assert [item["run_id"] for item in page["items"]].count(run_id) == 1
    logs = serve.client.get(f"/executions/{run_id}/logs", headers=tokens.header("read"))
    assert logs.headers["content-type"].startswith("text/plain")
    assert "== a attempt 1 (success) ==" in logs.text
    store = tokens.store
    store.tokens.revoke("read")  # effective on the next request
    try:
        refused = serve.client.get(f"/executions/{run_id}", headers=tokens.header("read"))
        assert refused.status_code == 401
    finally:
        tokens.make("read-again", tokens.store.tokens.get("read").scope)
        tokens.secrets["read"] = tokens.secrets["read-again"]


def test_execute_on_airflow_without_airflow_settings_is_a_409_naming_them(shared_serve):
    serve, tokens = shared_serve
    before = {run.run_id for run in tokens.store.list_runs(limit=1000)}
    answer = serve.client.post(
        "/pipelines/hello/execute", json={"on": "airflow"}, headers=tokens.header("run")
    )
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"].endswith("airflow-not-configured")
    for setting in ("BATCHPILOT_AIRFLOW_URL", "BATCHPILOT_AIRFLOW_USERNAME"):
        assert setting in problem["detail"]
    assert {run.run_id for run in tokens.store.list_runs(limit=1000)} == before  # no run


def test_the_event_stream_tells_run_and_task_changes(shared_serve):
    serve, tokens = shared_serve
    with serve.client.stream("GET", "/events", headers=tokens.header("read")) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(":")  # the stream is open
        run_id = _execute(serve, tokens, "hello")
        seen: list[tuple[str, dict[str, Any]]] = []
        for event, data in _events(lines):
            body = json.loads(data)
            if body.get("run_id") != run_id:
                continue
            seen.append((event, body))
            if event == "run" and body["status"] == "success":
                break
    statuses = [body["status"] for event, body in seen if event == "run"]
    # polled every half second: a run this short (a warm worker starts it within tens of
    # milliseconds) may go from queued to success between two looks; what is seen is in order
    order = ["queued", "running", "success"]
    assert statuses[-1] == "success" and statuses == sorted(statuses, key=order.index)
    task_states = {(b["task_id"], b["state"]) for e, b in seen if e == "task"}
    assert ("a", "success") in task_states and ("b", "success") in task_states


def test_log_follow_streams_the_lines_of_a_running_attempt_until_it_ends(shared_serve):
    serve, tokens = shared_serve
    run_id = _execute(serve, tokens, "chatty")
    text = ""
    end: dict[str, Any] = {}
    with serve.client.stream(
        "GET",
        f"/executions/{run_id}/logs",
        params={"task": "talk", "follow": "true"},
        headers=tokens.header("read"),
    ) as stream:
        assert stream.status_code == 200
        for event, data in _events(stream.iter_lines()):
            if event == "log":
                text += data
            elif event == "end":
                end = json.loads(data)
                break
    assert end["state"] == "success" and end["attempt"] == 1
    for i in range(3):
        assert f"chatty line {i}" in text


def test_retry_runs_the_failed_task_again_in_a_worker(shared_serve, tmp_path: Path):
    serve, tokens = shared_serve
    run_id = _execute(serve, tokens, "flaky", params={"marker": str(tmp_path / "flaky")})
    failed = _ended(serve, tokens, run_id)
    assert failed["status"] == "failed" and failed["tasks"]["shaky"]["state"] == "failed"
    retried = serve.client.post(f"/executions/{run_id}/retry", headers=tokens.header("run"))
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    run = _ended(serve, tokens, run_id)
    assert run["status"] == "success"
    assert run["tasks"]["shaky"]["attempts"] == 2 and run["tasks"]["first"]["attempts"] == 1


def test_compensate_monitor_pause_and_backfill_over_http(shared_serve, tmp_path: Path):
    serve, tokens = shared_serve
    marker = tmp_path / "undone"
    run_id = _execute(serve, tokens, "saga", params={"marker": str(marker)})
    assert _ended(serve, tokens, run_id)["status"] == "failed"
    monitored = serve.client.post(f"/executions/{run_id}/monitor", headers=tokens.header("run"))
    assert monitored.status_code == 200 and monitored.json()["status"] == "failed"
    started = serve.client.post(f"/executions/{run_id}/compensate", headers=tokens.header("run"))
    assert started.status_code == 202, started.text

    def compensation_ended() -> dict[str, Any] | None:
        run = _run(serve, tokens, run_id)
        ended = ("compensated", "compensation_failed")
        return run if run["tasks"]["done"]["state"] in ended else None

    undone = wait_until(compensation_ended, "the compensation ending", serve.output)
    assert undone["tasks"]["done"]["state"] == "compensated", undone
    assert marker.read_text() == "undone"

    admin = tokens.header("admin")
    paused = serve.client.post("/pipelines/yearly/pause", headers=admin).json()
    assert paused["paused"] is True and paused["schedule"]
    one = serve.client.get("/pipelines/yearly", headers=tokens.header("read")).json()
    assert one["paused"] is True and one["next_run"]
    assert serve.client.post("/pipelines/yearly/unpause", headers=admin).json()["paused"] is False

    bad = serve.client.post(
        "/pipelines/yearly/backfill", json={"start": "2020-13-01", "end": "2021"}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "start"
    backfill = serve.client.post(
        "/pipelines/yearly/backfill",
        json={"start": "2020-01-01", "end": "2021-01-01", "concurrency": 2},
        headers=admin,
    )
    assert backfill.status_code == 202, backfill.text

    def backfilled() -> list[dict[str, Any]]:
        page = serve.client.get(
            "/executions", params={"pipeline": "yearly"}, headers=tokens.header("read")
        ).json()["items"]
        done = [r for r in page if r["triggered_by"] == "backfill" and r["status"] == "success"]
        return done if len(done) == 2 else []

    runs = wait_until(backfilled, "the backfill's two runs", serve.output)
    assert sorted(r["ds"] for r in runs) == ["2020-01-01", "2021-01-01"]


def test_cancel_stops_a_pg_sleep_on_the_server(start_serve: ServeFactory, tmp_path, pg_url, pg_dsn):
    start_serve.env["BATCHPILOT_CONN_DWH"] = pg_url
    serve = start_serve(write_pipelines(tmp_path / "pipelines", "sleepy_sql"))
    tokens = standard_tokens(start_serve.store())

    def sleeping() -> int:
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' "
                "AND state = 'active'"
            ).fetchone()
        return row[0] if row else 0

    run_id = _execute(serve, tokens, "sleepy_sql")
    wait_until(sleeping, "pg_sleep running on the server", serve.output)
    cancelled = serve.client.post(f"/executions/{run_id}/cancel", headers=tokens.header("run"))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["tasks"]["sleep"]["state"] == "cancelled"
    wait_until(lambda: sleeping() == 0, "the statement ending on the server", serve.output)
    again = serve.client.post(f"/executions/{run_id}/cancel", headers=tokens.header("run"))
    assert again.status_code == 409
    # SIGTERM with an event stream open: serve ends it and exits cleanly
    with serve.client.stream("GET", "/events", headers=tokens.header("read")) as stream:
        assert next(stream.iter_lines()).startswith(":")
        assert serve.terminate() == 0
    tokens.store.dispose()


def test_kill_9_of_serve_and_restart_leaves_no_run_running(start_serve: ServeFactory, tmp_path):
    folder = write_pipelines(tmp_path / "pipelines", "slow", "hello")
    first = start_serve(folder)
    store = start_serve.store()
    tokens = standard_tokens(store)
    marker = tmp_path / "slow-marker"
    run_id = _execute(first, tokens, "slow", params={"marker": str(marker)})
    wait_until(marker.exists, "the slow task starting", first.output)
    first.kill()
    kill_run_owners(store)  # its worker dies too, as when the machine's jobs are killed
    assert store.get_run(run_id).status is RunStatus.RUNNING  # as the dead process left it

    second = start_serve(folder, "--no-scheduler")
    health = second.client.get("/health").json()
    assert health["scheduler"] is False
    run = _ended(second, tokens, run_id)  # resumed by a worker: the marker makes it quick
    assert run["status"] == "success" and run["tasks"]["nap"]["attempts"] == 2
    queued = _execute(second, tokens, "hello")  # API-only serve still executes queued runs
    assert _ended(second, tokens, queued)["status"] == "success"
    assert store.runs_in_status([RunStatus.RUNNING]) == []
    store.dispose()


def test_serve_refuses_a_port_in_use_naming_it(tmp_path: Path, cli):
    folder = write_pipelines(tmp_path / "pipelines", "hello")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVE, "--pipelines", str(folder), "--port", str(port)],
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
    assert "Traceback" not in result.stderr
