"""Runs recorded as Airflow's go through the airflow executor in every command, and an
Airflow that is not configured or not reachable is one clear line (no server needed:
the live Airflow tests are in tests/airflow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpilot.airflow.errors import AirflowConfigError, AirflowUnreachable
from batchpilot.airflow.executor import AirflowExecutor
from batchpilot.airflow.settings import AirflowSettings
from batchpilot.engine import RunService
from batchpilot.engine.executors import Executors, LocalExecutor
from batchpilot.errors import RunStateError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from tests.airflow_run_records import record_airflow_run
from tests.cli_runner import Cli

PIPELINE = {"name": "af_chain", "nodes": [{"id": "a", "type": "empty"}]}


@pytest.fixture
def cli(cli_in_process: Cli) -> Cli:
    return cli_in_process


def _record_airflow_run(home: Path, run_id: str, status: RunStatus) -> None:
    store = RunStore.for_home(home)
    record_airflow_run(store, build_pipeline(PIPELINE), status, run_id)
    store.dispose()


def test_listing_an_unfinished_airflow_run_without_airflow_warns_and_shows_it(cli: Cli, home: Path):
    _record_airflow_run(home, "20240101T000000-aaaaaa", RunStatus.RUNNING)
    listed = cli("runs", "list", "-o", "json")
    assert listed.code == 0
    assert [(r["run_id"], r["status"], r["executor"]) for r in listed.json()] == [
        ("20240101T000000-aaaaaa", "running", "airflow")
    ]
    assert listed.stderr.strip().splitlines() == [
        "warning: Airflow runs shown as last seen: set BATCHPILOT_AIRFLOW_URL, "
        "BATCHPILOT_AIRFLOW_USERNAME, BATCHPILOT_AIRFLOW_PASSWORD to talk to Airflow"
    ]
    shown = cli("runs", "show", "20240101T000000-aaaaaa", "-o", "json")
    assert shown.code == 0 and shown.json()["status"] == "running"


def test_logs_of_an_airflow_run_need_airflow_and_say_so_in_one_line(cli: Cli, home: Path):
    _record_airflow_run(home, "20240101T000000-bbbbbb", RunStatus.SUCCESS)
    logs = cli("logs", "20240101T000000-bbbbbb")
    assert logs.code == 2
    assert logs.stderr.strip().splitlines() == [
        "error: set BATCHPILOT_AIRFLOW_URL, BATCHPILOT_AIRFLOW_USERNAME, "
        "BATCHPILOT_AIRFLOW_PASSWORD to talk to Airflow"
    ]


def test_cancelling_an_ended_airflow_run_is_refused_without_asking_airflow(cli: Cli, home: Path):
    _record_airflow_run(home, "20240101T000000-cccccc", RunStatus.FAILED)
    cancelled = cli("cancel", "20240101T000000-cccccc")
    assert cancelled.code == 2
    assert cancelled.stderr.strip() == (
        "error: run 20240101T000000-cccccc already ended (failed); nothing to cancel"
    )


def _service(tmp_path: Path, airflow: AirflowSettings) -> RunService:
    settings = Settings(home=tmp_path / "home")
    store = RunStore.for_home(settings.home)
    executors = Executors([LocalExecutor(), AirflowExecutor(lambda: airflow)])
    return RunService(settings=settings, store=store, executors=executors)


def test_starting_on_an_airflow_that_is_down_records_nothing(tmp_path: Path):
    (tmp_path / "dags").mkdir()
    down = AirflowSettings(
        url="http://127.0.0.1:9", username="admin", password="pw", dags_folder=tmp_path / "dags"
    )
    service = _service(tmp_path, down)
    with pytest.raises(AirflowUnreachable, match=r"cannot reach Airflow at http://127\.0\.0\.1:9"):
        service.start(build_pipeline(PIPELINE), on="airflow")
    assert service.list_runs() == []
    assert list((tmp_path / "dags").iterdir()) == []


def test_starting_on_airflow_without_a_dags_folder_names_the_setting(tmp_path: Path):
    service = _service(tmp_path, AirflowSettings(url="http://af", username="a", password="b"))
    with pytest.raises(AirflowConfigError, match="set BATCHPILOT_AIRFLOW_DAGS_FOLDER"):
        service.start(build_pipeline(PIPELINE), on="airflow")
    assert service.list_runs() == []


def test_an_ended_airflow_run_is_not_cancelled_again(tmp_path: Path):
    service = _service(tmp_path, AirflowSettings())
    _record_airflow_run(tmp_path / "home", "20240101T000000-dddddd", RunStatus.SUCCESS)
    with pytest.raises(RunStateError, match="already ended"):
        service.cancel("20240101T000000-dddddd")


def test_reaping_leaves_a_running_airflow_run_alone(tmp_path: Path):
    service = _service(tmp_path, AirflowSettings())
    _record_airflow_run(tmp_path / "home", "20240101T000000-eeeeee", RunStatus.RUNNING)
    assert service.reap() == []
    assert service.store.get_run("20240101T000000-eeeeee").status is RunStatus.RUNNING
