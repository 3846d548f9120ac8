"""``serve`` follows the runs it started on Airflow until they end: across its own restart
(with either ``--on-dead-runs`` policy), and after its follower lost track of one.

A real ``serve`` (its components in this process, its workers forked as in
production, a real SQLite store) against a stand-in for Airflow's REST API: a real
HTTP server on 127.0.0.1 that says what the test tells it (a DAG run running or
done, a login refused). ``tests/airflow/test_api_on_airflow.py`` does the same
against a real Airflow.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchpilot.scheduler.components import DeadRunPolicy, ServeContext, ServeOptions
from batchpilot.scheduler.serve import ServeProcess
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from tests.airflow_run_records import record_airflow_run
from tests.waiting import wait_until


class StandInAirflow:
    """Airflow's REST API as far as a follower reads it: a token, one DAG run's state, no
    task instances. ``refuse_logins`` makes ``/auth/token`` answer 401 (a rotated
    password); ``dag_run_state`` is what every DAG run reports."""

    def __init__(self) -> None:
        self.refuse_logins = False
        self.dag_run_state = "running"
        self.dag_run_reads = 0
        airflow = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/auth/token":
                    self._answer(404, {"detail": "not found"})
                elif airflow.refuse_logins:
                    self._answer(401, {"detail": "invalid credentials"})
                else:
                    self._answer(201, {"access_token": "stand-in-token"})

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path.endswith("/taskInstances"):
                    self._answer(200, {"task_instances": [], "total_entries": 0})
                elif "/dagRuns/" in path:
                    airflow.dag_run_reads += 1
                    self._answer(200, {"state": airflow.dag_run_state})
                else:
                    self._answer(404, {"detail": "not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def airflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInAirflow]:
    """The stand-in, named by ``BATCHPILOT_AIRFLOW_*`` (serve's workers inherit them)."""
    server = StandInAirflow()
    monkeypatch.setenv("BATCHPILOT_AIRFLOW_URL", server.url)
    monkeypatch.setenv("BATCHPILOT_AIRFLOW_USERNAME", "etl")
    monkeypatch.setenv("BATCHPILOT_AIRFLOW_PASSWORD", "stand-in-secret")
    yield server
    server.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def store(settings: Settings) -> Iterator[RunStore]:
    store = RunStore.for_home(settings.home)
    yield store
    store.dispose()


def run_on_airflow(store: RunStore, status: RunStatus) -> str:
    """A run the store shows triggered on Airflow (its DAG run id recorded), in ``status``."""
    spec = build_pipeline({"name": "remote_etl", "nodes": [{"id": "load", "type": "empty"}]})
    return record_airflow_run(store, spec, status)


class Serve:
    """``serve``'s process in this test: started, stopped, what it said."""

    def __init__(self, settings: Settings, store: RunStore, folder: Path, **options: object):
        self.said: list[str] = []
        context = ServeContext(settings=settings, store=store, say=self.said.append)
        self.process = ServeProcess(
            ServeOptions(pipelines=folder, dispatch_s=0.05, **options),  # type: ignore[arg-type]
            context,
        )
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def said_line(self, *parts: str) -> bool:
        return any(all(part in line for part in parts) for line in self.said)


def wait_for(condition: Callable[[], bool], what: str, serve: Serve) -> None:
    wait_until(condition, what, lambda: f"serve said: {serve.said}", interval_s=0.05)


@pytest.mark.parametrize("policy", [DeadRunPolicy.RESUME, DeadRunPolicy.REAP])
def test_a_restarted_serve_follows_the_runs_in_flight_on_airflow_to_their_end(
    airflow: StandInAirflow,
    settings: Settings,
    store: RunStore,
    tmp_path: Path,
    policy: DeadRunPolicy,
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    running = run_on_airflow(store, RunStatus.RUNNING)
    queued = run_on_airflow(store, RunStatus.QUEUED)  # triggered, not started by Airflow yet
    airflow.dag_run_state = "queued"  # Airflow's word for both: neither moves meanwhile

    first = Serve(settings, store, folder)
    try:
        reads = airflow.dag_run_reads
        wait_for(lambda: airflow.dag_run_reads >= reads + 4, "the followers polling", first)
    finally:
        first.stop()  # SIGTERM to its workers: the followers stop, the runs go on in Airflow
    assert store.get_run(running).status is RunStatus.RUNNING
    assert store.get_run(running).error is None
    assert store.get_run(queued).status is RunStatus.QUEUED

    airflow.dag_run_state = "success"  # they ended in Airflow while serve was down
    second = Serve(settings, store, folder, on_dead_runs=policy)
    try:
        for run_id in (running, queued):
            wait_for(
                lambda run_id=run_id: store.get_run(run_id).status is RunStatus.SUCCESS,  # type: ignore[misc]
                f"run {run_id} followed to its end",
                second,
            )
            assert second.said_line(f"following run {run_id} of remote_etl on airflow again")
    finally:
        second.stop()


def test_a_follower_that_loses_its_airflow_run_records_why_and_serve_follows_it_again(
    airflow: StandInAirflow, settings: Settings, store: RunStore, tmp_path: Path
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    run_id = run_on_airflow(store, RunStatus.RUNNING)
    airflow.refuse_logins = True  # the password was rotated under serve's feet

    serve = Serve(settings, store, folder, refollow_after_s=0.2)
    try:
        wait_for(
            lambda: store.get_run(run_id).status is RunStatus.UNKNOWN, "the run unknown", serve
        )
        error = store.get_run(run_id).error or ""
        assert f"lost track of run {run_id} in Airflow" in error
        assert "rejected the login of user 'etl' (HTTP 401)" in error
        assert "serve follows it again" in error
        assert "stand-in-secret" not in error
        wait_for(lambda: serve.said_line(f"lost track of run {run_id}"), "said so", serve)

        airflow.refuse_logins = False  # the password is fixed, and the run went on there
        airflow.dag_run_state = "success"
        wait_for(lambda: store.get_run(run_id).status is RunStatus.SUCCESS, "the run ended", serve)
        assert serve.said_line(f"following run {run_id} again")
    finally:
        serve.stop()
