"""Airflow's own DagBag imports every exported pipeline with zero import errors,
and reads back batchpilot's policies as Airflow's arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpilot.airflow import export_pipeline
from batchpilot.airflow.export import source_label
from batchpilot.pipeline import load_pipeline
from tests.airflow.conftest import PIPELINES, DagTestHome
from tests.conftest import REPO_ROOT

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*/*.yaml")) + sorted(
    (REPO_ROOT / "examples").glob("*.yaml")
)
OWN = sorted(PIPELINES.glob("*.yaml"))

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dagbag(dag_test_home: DagTestHome, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every example and test pipeline exported into one folder, imported by a DagBag."""
    folder = tmp_path_factory.mktemp("exported-dags")
    for path in [*EXAMPLES, *OWN]:
        export_pipeline(load_pipeline(path), folder, source=source_label(path))
    return dag_test_home.dagbag(folder)


def test_examples_exist_to_be_exported():
    assert EXAMPLES, "examples/ holds no pipeline"


@pytest.mark.parametrize("path", [*EXAMPLES, *OWN], ids=lambda p: p.name)
def test_every_pipeline_imports_in_airflow_without_errors(dagbag: dict, path: Path):
    assert dagbag["import_errors"] == {}
    spec = load_pipeline(path)
    dag = dagbag["dags"][spec.name]
    pipeline_tasks = {t: v for t, v in dag["tasks"].items() if t in spec.node_ids}
    assert set(pipeline_tasks) == set(spec.node_ids)
    for node in spec.nodes:
        assert set(pipeline_tasks[node.id]["upstream"]) == set(node.upstream)
        assert pipeline_tasks[node.id]["operator"] == "BatchpilotOperator"


def test_retries_backoff_timeout_and_trigger_rules_are_airflows_own(dagbag: dict):
    tasks = dagbag["dags"]["af_chain"]["tasks"]
    assert tasks["numbers"]["retries"] == 1
    assert tasks["numbers"]["retry_delay"] == 2.0
    assert tasks["numbers"]["retry_exponential_backoff"] == 2.0
    assert tasks["numbers"]["max_retry_delay"] == 60.0
    assert tasks["numbers"]["execution_timeout"] == 300.0
    assert tasks["done"]["trigger_rule"] == "all_done"
    assert dagbag["dags"]["af_chain"]["params"] == {"count": 5, "db": "/dev/null"}
    # all_done lets 'done' run after a failure: the outcome task keeps the DAG run honest
    assert tasks["batchpilot.outcome"]["upstream"] == ["done", "numbers", "save"]


def test_compensation_waits_for_every_task_and_the_outcome_for_the_saga(dagbag: dict):
    tasks = dagbag["dags"]["af_saga"]["tasks"]
    assert tasks["compensate.save"]["operator"] == "BatchpilotCompensationOperator"
    assert tasks["compensate.save"]["trigger_rule"] == "all_done"
    assert tasks["compensate.save"]["upstream"] == ["numbers", "publish", "save"]
    assert tasks["batchpilot.outcome"]["upstream"] == [
        "compensate.save",
        "numbers",
        "publish",
        "save",
    ]
    saga = dagbag["dags"]["order_saga"]["tasks"]
    compensations = sorted(t for t in saga if t.startswith("compensate."))
    assert len(compensations) == 2
    later, earlier = sorted(compensations, key=lambda t: len(saga[t]["upstream"]))
    assert later in saga[earlier]["upstream"]  # undone in reverse dependency order
