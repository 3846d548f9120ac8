"""``batchpilot run --on airflow``, ``runs``, ``logs`` and ``cancel`` against a real Airflow
(``airflow standalone``: API server, scheduler with the LocalExecutor, DAG processor)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from batchpilot.airflow.client import AirflowClient
from batchpilot.airflow.errors import DagImportError
from batchpilot.airflow.remote import wait_for_dag
from tests.airflow.conftest import PIPELINES, AirflowServer

pytestmark = pytest.mark.airflow


class RemoteCli:
    """``python -m batchpilot`` with the environment that points it at the test Airflow."""

    def __init__(self, server: AirflowServer, home: Path, **overrides: str) -> None:
        self.env = {**server.client_env(home), **overrides}

    def __call__(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "batchpilot", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "batchpilot", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def remote(airflow_server: AirflowServer, home: Path) -> RemoteCli:
    return RemoteCli(airflow_server, home)


def test_a_run_on_airflow_is_followed_recorded_and_logged(remote: RemoteCli, tmp_path: Path):
    db = tmp_path / "target.db"
    done = remote(
        "run",
        str(PIPELINES / "chain.yaml"),
        "--on",
        "airflow",
        "-p",
        f"db={db}",
        "-p",
        "count=5",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "success"
    assert {t: v["state"] for t, v in result["tasks"].items()} == {
        "numbers": "success",
        "save": "success",
        "done": "success",
    }
    assert result["tasks"]["numbers"]["rows_out"] == 5  # read back from the task's XCom
    assert "numbers success" in done.stderr  # the same line-by-line display as a local run
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), min(run_id) FROM numbers").fetchone() == (
            5,
            result["run_id"],
        )

    listed = remote.json("runs", "list")
    assert [(r["run_id"], r["executor"], r["status"]) for r in listed] == [
        (result["run_id"], "airflow", "success")
    ]
    assert remote.json("runs", "show", result["run_id"]) == result
    logs = remote("logs", result["run_id"], "--task", "save")
    assert logs.returncode == 0, logs.stderr
    assert "saved 5 rows for run " + result["run_id"] in logs.stdout


def test_cancel_stops_an_airflow_run(remote: RemoteCli, airflow_server: AirflowServer):
    follower = remote.start("run", str(PIPELINES / "slow.yaml"), "--on", "airflow", "-o", "json")
    try:
        run_id = _wait_for_task_state(
            remote, "wait", "running", timeout_s=120, follower=follower, server=airflow_server
        )
        cancelled = remote("cancel", run_id, "-o", "json")
        assert cancelled.returncode == 0, cancelled.stderr
        shown = json.loads(cancelled.stdout)
        assert shown["status"] == "cancelled"
        assert shown["tasks"]["wait"]["state"] == "cancelled"
        stdout, stderr = follower.communicate(timeout=120)
    finally:
        follower.kill()
    assert follower.returncode == 1, stderr
    followed = json.loads(stdout)
    assert followed["status"] == "cancelled"
    assert followed["tasks"] == shown["tasks"]  # the follower kept "cancelled", not "failed"
    assert followed["tasks"]["start"]["state"] == "success"
    client = AirflowClient(airflow_server.url, airflow_server.username, airflow_server.password)
    assert client.get_dag_run("af_slow", run_id)["state"] == "failed"
    assert remote("cancel", run_id).returncode == 2  # it already ended


def test_a_wrong_password_is_one_line_and_registers_nothing(
    airflow_server: AirflowServer, home: Path
):
    wrong = "not-the-password-x9"
    remote = RemoteCli(airflow_server, home, BATCHPILOT_AIRFLOW_PASSWORD=wrong)
    done = remote("run", str(PIPELINES / "chain.yaml"), "--on", "airflow")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: Airflow at {airflow_server.url} rejected the login of user 'admin' (HTTP 401): "
        "check BATCHPILOT_AIRFLOW_USERNAME and BATCHPILOT_AIRFLOW_PASSWORD"
    ]
    assert wrong not in done.stderr + done.stdout
    assert remote.json("runs", "list") == []


def test_an_airflow_that_is_down_is_one_line(airflow_server: AirflowServer, home: Path):
    remote = RemoteCli(airflow_server, home, BATCHPILOT_AIRFLOW_URL="http://127.0.0.1:9")
    done = remote("run", str(PIPELINES / "chain.yaml"), "--on", "airflow")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: cannot reach Airflow at http://127.0.0.1:9: Connection refused"
    ]
    assert remote.json("runs", "list") == []


def test_a_schedule_airflow_would_refuse_is_refused_before_airflow_is_asked(
    remote: RemoteCli, airflow_server: AirflowServer, tmp_path: Path
):
    broken = tmp_path / "bad_schedule.yaml"
    broken.write_text(
        "name: af_bad_schedule\nschedule: every second tuesday\nnodes: [{id: a, type: empty}]\n"
    )
    done = remote("run", str(broken), "--on", "airflow")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "field 'schedule'" in lines[0]
    assert not (airflow_server.dags / "af_bad_schedule.py").exists()  # nothing deployed
    assert remote.json("runs", "list") == []


def test_a_dag_airflow_cannot_import_is_reported_with_airflows_text(
    airflow_server: AirflowServer,
):
    """Our own checks now refuse every schedule Airflow would refuse, so the DAG file is
    broken by hand: what we wait on is Airflow's report, in Airflow's words."""
    file_name = "af_broken_by_hand.py"
    (airflow_server.dags / file_name).write_text(
        "from airflow.sdk import DAG\n"
        "with DAG(dag_id='af_broken_by_hand', schedule='every second tuesday'):\n"
        "    pass\n"
    )
    client = AirflowClient(airflow_server.url, airflow_server.username, airflow_server.password)
    with pytest.raises(DagImportError) as refused:
        wait_for_dag(client, "af_broken_by_hand", file_name, since=None, timeout_s=120, poll_s=1.0)
    message = str(refused.value)
    assert message.startswith(f"Airflow could not import the DAG file {file_name}: ")
    assert "\n" not in message
    assert "AirflowTimetableInvalid" in message  # Airflow's own words for the bad schedule


def _wait_for_task_state(
    remote: RemoteCli,
    task_id: str,
    state: str,
    *,
    timeout_s: float,
    follower: subprocess.Popen[str],
    server: AirflowServer,
) -> str:
    deadline = time.monotonic() + timeout_s
    seen: Any = "no run recorded yet"
    while time.monotonic() < deadline:
        if follower.poll() is not None:
            out, err = follower.communicate()
            raise AssertionError(
                f"'run --on airflow' exited ({follower.returncode}) before {task_id} became "
                f"{state}: {err.strip()} {out.strip()}"
            )
        runs = remote.json("runs", "list")
        if runs:
            shown = remote.json("runs", "show", runs[0]["run_id"])
            seen = {t: v["state"] for t, v in shown["tasks"].items()}
            if shown["tasks"][task_id]["state"] == state:
                return str(runs[0]["run_id"])
        time.sleep(1)
    log = (server.home / "standalone.log").read_text(errors="replace")[-4000:]
    raise AssertionError(
        f"task {task_id} never became {state} in {timeout_s:g}s; last seen: {seen}; "
        f"end of Airflow's log:\n{log}"
    )
