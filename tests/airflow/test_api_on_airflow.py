"""``POST /api/v1/pipelines/{name}/execute`` with ``"on": "airflow"`` against a real Airflow
(the session's ``airflow standalone``): ``serve`` queues the run, its worker deploys the
DAG and triggers it, and the run's record (executor ``airflow``) follows it to the end;
``POST /executions/{id}/monitor`` refreshes it from Airflow. A ``serve`` stopped while
the run is in flight leaves it running there, and the next ``serve`` follows it to its
end."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.airflow.conftest import PIPELINES, AirflowServer
from tests.api.conftest import LiveServe

pytestmark = pytest.mark.airflow

#: generous: waiting for Airflow to parse, schedule and run three tasks, not a speed claim
WAIT_S = 300.0


def pipelines_and_token(tmp_path: Path, home: Path, pipeline: str) -> tuple[Path, RunStore, str]:
    """A pipelines folder holding ``pipeline`` and the test steps it calls, the home's
    store, and the secret of a new token that may run pipelines."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name in (pipeline, "airflow_test_steps.py"):
        shutil.copy(PIPELINES / name, folder / name)
    store = RunStore.for_home(home)
    _, run_secret = store.tokens.create("ci", TokenScope.RUN)
    return folder, store, run_secret


def test_execute_on_airflow_over_the_api_runs_the_dag_and_records_it(
    airflow_server: AirflowServer, home: Path, tmp_path: Path
) -> None:
    folder, store, run_secret = pipelines_and_token(tmp_path, home, "chain.yaml")
    serve = LiveServe(airflow_server.client_env(home), folder, tmp_path / "serve.log")
    db = tmp_path / "target.db"
    try:
        headers = {"Authorization": f"Bearer {run_secret}"}
        answer = serve.client.post(
            "/pipelines/af_chain/execute",
            json={"on": "airflow", "params": {"db": str(db), "count": 4}},
            headers=headers,
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        assert store.get_run(run_id).executor == "airflow"

        deadline = time.monotonic() + WAIT_S
        shown = serve.client.post(f"/executions/{run_id}/monitor", headers=headers).json()
        while shown["status"] not in ("success", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"run still {shown['status']}:\n{serve.output()}"
            time.sleep(2)
            shown = serve.client.post(f"/executions/{run_id}/monitor", headers=headers).json()
        assert shown["status"] == "success", serve.output()
        assert {task: view["state"] for task, view in shown["tasks"].items()} == {
            "numbers": "success",
            "save": "success",
            "done": "success",
        }
        record = store.get_run(run_id)
        assert record.executor == "airflow" and record.external_id == run_id
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*), min(run_id) FROM numbers").fetchone() == (
                4,
                run_id,
            )
    finally:
        serve.kill()
        store.dispose()


def test_a_restart_of_serve_follows_the_airflow_run_it_left_in_flight_to_its_end(
    airflow_server: AirflowServer, home: Path, tmp_path: Path
) -> None:
    folder, store, run_secret = pipelines_and_token(tmp_path, home, "slow.yaml")
    env = airflow_server.client_env(home)
    first = LiveServe(env, folder, tmp_path / "serve-1.log")
    second: LiveServe | None = None
    try:
        answer = first.client.post(
            "/pipelines/af_slow/execute",
            json={"on": "airflow", "params": {"sleep_s": 20}},
            headers={"Authorization": f"Bearer {run_secret}"},
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        deadline = time.monotonic() + WAIT_S
        while store.get_run(run_id).status is not RunStatus.RUNNING:
            assert time.monotonic() < deadline, f"never running:\n{first.output()}"
            time.sleep(1)

        assert first.terminate() == 0  # its follower stops; the DAG run goes on in Airflow
        stopped = store.get_run(run_id)
        assert stopped.status is RunStatus.RUNNING, (stopped.error, first.output())

        second = LiveServe(env, folder, tmp_path / "serve-2.log", "--on-dead-runs", "reap")
        deadline = time.monotonic() + WAIT_S
        while not (record := store.get_run(run_id)).status.is_terminal():
            assert time.monotonic() < deadline, f"still {record.status}:\n{second.output()}"
            time.sleep(1)
        assert record.status is RunStatus.SUCCESS, (record.error, second.output())
        assert {t.task_id: t.state.value for t in store.get_tasks(run_id)} == {
            "start": "success",
            "wait": "success",
        }
        assert f"following run {run_id} of af_slow on airflow again" in second.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()
        store.dispose()
