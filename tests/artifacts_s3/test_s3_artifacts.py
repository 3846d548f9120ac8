"""Datasets between steps on a real S3-compatible server (moto on 127.0.0.1): the
artifact store, and an Airflow worker's tasks exchanging them by reference in XCom
(the worker's code path, called in this process without Airflow itself)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest

from batchpilot.airflow.runtime import PipelineInfo, run_artifacts, run_node
from batchpilot.airflow.settings import WorkerSettings
from batchpilot.artifacts import ArtifactStore, iter_batches, read_schema, read_table
from batchpilot.artifacts.storage import use_s3
from batchpilot.errors import ArtifactError, S3UrlError
from batchpilot.s3 import S3Endpoint
from batchpilot.spec.model import NodeSpec
from tests.cli_runner import Cli
from tests.s3_server import SECRET_ACCESS_KEY, S3Server

ORDERS = pa.table({"id": [1, 2, 3, 4], "amount": [10.0, 250.0, 75.5, 1200.0]})


@pytest.fixture
def s3(s3_server: S3Server, aws_env: dict[str, str]) -> S3Server:
    use_s3(S3Endpoint(url=s3_server.endpoint, region="us-east-1"))
    return s3_server


def test_an_artifact_written_to_s3_reads_back_whole_by_table_schema_and_batches(
    s3: S3Server, bucket: str
):
    store = ArtifactStore(f"s3://{bucket}/runs/r1")
    ref = store.write_batches("orders", ORDERS.schema, ORDERS.to_batches(max_chunksize=1))
    assert (ref.path, ref.rows) == (f"s3://{bucket}/runs/r1/orders.arrow", 4)
    assert list(s3.objects(f"{bucket}/runs")) == [f"{bucket}/runs/r1/orders.arrow"]
    assert read_table(ref).equals(ORDERS)
    assert read_schema(ref) == ORDERS.schema
    assert pa.Table.from_batches(list(iter_batches(ref))).equals(ORDERS)


def test_a_write_that_fails_midway_leaves_nothing_in_the_bucket(s3: S3Server, bucket: str):
    def batches_then_a_crash():
        yield ORDERS.to_batches()[0]
        raise RuntimeError("the source connection dropped")

    store = ArtifactStore(f"s3://{bucket}/runs/r2")
    with pytest.raises(RuntimeError, match="connection dropped"):
        store.write_batches("orders", ORDERS.schema, batches_then_a_crash())
    assert s3.objects(f"{bucket}/runs") == {}
    with pytest.raises(ArtifactError, match=r"artifact s3://.*/orders.arrow is missing"):
        read_table(f"s3://{bucket}/runs/r2/orders.arrow")


def _pipeline_steps(folder: Path) -> None:
    (folder / "s3_steps.py").write_text(
        "import pyarrow as pa\n"
        "def orders():\n"
        "    return pa.table({'id': [1, 2, 3, 4], 'amount': [10.0, 250.0, 75.5, 1200.0]})\n"
    )


def test_airflow_tasks_pass_datasets_through_s3_and_only_references_through_xcom(
    s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _pipeline_steps(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = WorkerSettings.from_env(artifacts=f"s3://{bucket}/airflow")
    assert settings.artifacts_root == f"s3://{bucket}/airflow"
    run_id = "manual__2026-12-01T10:00:00+00:00"
    pipeline = PipelineInfo(name="orders_daily", folder=str(tmp_path))
    common = {"pipeline": pipeline, "params": {}, "run_id": run_id, "ds": "2026-12-01"}
    common |= {"attempt": 1, "connections": settings.connections}
    log = logging.getLogger("test.airflow.task")

    extract = NodeSpec(id="extract", type="python", config={"callable": "s3_steps:orders"})
    pushed = run_node(
        node=extract,
        upstream={},
        artifacts=run_artifacts(settings, "orders_daily", run_id),
        log=log,
        **common,
    )
    big = NodeSpec(
        id="big_orders",
        type="transform.sql",
        config={"query": "SELECT id FROM extract WHERE amount > 100 ORDER BY id"},
        upstream=("extract",),
    )
    result = run_node(
        node=big,
        upstream={"extract": json.loads(json.dumps(pushed))},  # as XCom stores it
        artifacts=run_artifacts(settings, "orders_daily", run_id),
        log=log,
        **common,
    )

    folder = f"s3://{bucket}/airflow/orders_daily/manual__2026-12-01T10_00_00_00_00"
    assert pushed["artifact"] == {"path": f"{folder}/extract.arrow", "rows": 4}
    assert result["artifact"] == {"path": f"{folder}/big_orders.arrow", "rows": 2}
    assert len(json.dumps(result)) < 500  # references and counts, never the rows
    assert read_table(result["artifact"]["path"]).column("id").to_pylist() == [2, 4]


def test_a_worker_with_a_bad_s3_artifacts_url_says_which_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATCHPILOT_AIRFLOW_ARTIFACTS", "s3://")
    with pytest.raises(S3UrlError, match="BATCHPILOT_AIRFLOW_ARTIFACTS='s3://' names no bucket"):
        WorkerSettings.from_env()


def test_export_writes_an_s3_artifacts_url_into_the_dag_and_refuses_a_bad_one(
    cli_in_process: Cli, tmp_path: Path
):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: tiny\nnodes: [{id: start, type: empty}]\n")
    dags = tmp_path / "dags"
    done = cli_in_process(
        "export", "airflow", str(pipeline), "--out", str(dags), "--artifacts", "s3://lake/bp/"
    )
    assert done.code == 0, done.stderr
    (dag,) = dags.glob("*.py")
    assert 'ARTIFACTS = "s3://lake/bp"' in dag.read_text()

    for bad, problem in [
        ("gs://lake/bp", "must start with s3://"),
        (f"s3://AKIA:{SECRET_ACCESS_KEY}@lake/bp", "must not hold credentials"),
    ]:
        refused = cli_in_process(
            "export", "airflow", str(pipeline), "--out", str(dags), "--artifacts", bad
        )
        assert refused.code == 2 and "--artifacts" in refused.stderr and problem in refused.stderr
        assert SECRET_ACCESS_KEY not in refused.stderr + refused.stdout
