"""Exported pipelines run end to end in Airflow (``dag.test()``) and change the target
database exactly as a local run would: a retried task, and a saga that undoes a load."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchpilot.airflow import export_pipeline
from batchpilot.pipeline import load_pipeline
from tests.airflow.conftest import PIPELINES, DagTestHome, params_for
from tests.s3_server import S3Server

pytestmark = pytest.mark.airflow


def _rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def test_a_task_that_fails_once_succeeds_on_its_retry(dag_test_home: DagTestHome, tmp_path: Path):
    export_pipeline(load_pipeline(PIPELINES / "retry_once.yaml"), dag_test_home.dags)
    params = params_for(tmp_path, count=4, state_dir=str(tmp_path / "state"))

    run = dag_test_home.test("af_retry_once", params)

    assert run["state"] == "success"
    assert {t: s["state"] for t, s in run["tasks"].items()} == {
        "numbers": "success",
        "double": "success",
        "save": "success",
    }
    assert run["tasks"]["double"]["try_number"] == 2
    assert run["tasks"]["save"]["try_number"] == 1
    assert _rows(tmp_path / "target.db", "SELECT n, run_id FROM numbers ORDER BY n") == [
        (2, run["run_id"]),
        (4, run["run_id"]),
        (6, run["run_id"]),
        (8, run["run_id"]),
    ]


def test_a_failure_after_the_load_runs_its_compensation(dag_test_home: DagTestHome, tmp_path: Path):
    export_pipeline(load_pipeline(PIPELINES / "saga.yaml"), dag_test_home.dags)

    run = dag_test_home.test("af_saga", params_for(tmp_path, count=3))

    assert run["state"] == "failed"
    states = {t: s["state"] for t, s in run["tasks"].items()}
    assert states == {
        "numbers": "success",
        "save": "success",
        "publish": "failed",
        "compensate.save": "success",
        "batchpilot.outcome": "failed",
    }
    db = tmp_path / "target.db"
    assert _rows(db, "SELECT count(*) FROM numbers") == [(0,)]  # the load was undone
    assert _rows(db, "SELECT what, run_id FROM undo_log") == [("numbers", run["run_id"])]
    assert _rows(db, "SELECT run_id FROM alerts") == [(run["run_id"],)]  # on_run_failure


def test_a_successful_run_compensates_nothing(dag_test_home: DagTestHome, tmp_path: Path):
    export_pipeline(load_pipeline(PIPELINES / "chain.yaml"), dag_test_home.dags)

    run = dag_test_home.test("af_chain", params_for(tmp_path, count=3))

    assert run["state"] == "success"
    assert run["tasks"]["batchpilot.outcome"]["state"] == "success"
    assert _rows(tmp_path / "target.db", "SELECT n FROM numbers ORDER BY n") == [(1,), (2,), (3,)]


def test_datasets_between_tasks_go_through_s3_when_exported_with_an_s3_artifacts_url(
    dag_test_home: DagTestHome, tmp_path: Path, s3_server: S3Server, bucket: str, aws_env: dict
):
    spec = load_pipeline(PIPELINES / "chain.yaml")
    export_pipeline(spec, dag_test_home.dags, artifacts=f"s3://{bucket}/airflow")

    run = dag_test_home.test("af_chain", params_for(tmp_path, count=3))

    assert run["state"] == "success"
    assert _rows(tmp_path / "target.db", "SELECT n FROM numbers ORDER BY n") == [(1,), (2,), (3,)]
    stored = s3_server.objects(f"{bucket}/airflow/af_chain")
    assert [path.rsplit("/", 1)[-1] for path in stored] == ["numbers.arrow"]  # read by save
