"""A ``batchpilot run`` killed with SIGKILL mid-load is finished by ``resume``
with exactly the expected rows: nothing lost, nothing loaded twice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from batchpilot.states import TaskState
from tests.resilience.harness import Batchpilot, kill

ROWS = 1_000_000  # enough for the binary COPY to last past the longest delay

PIPELINE = """
name: kill_me
nodes:
  - {id: extract, type: extract.csv, config: {path: "{{ pipeline_dir }}/facts.csv"}}
  - {id: load, type: load.postgres, depends_on: [extract],
     config: {connection: dwh, table: facts, mode: append}}
"""


def write_csv(path: Path, rows: int) -> None:
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "customer": pa.array([f"customer-{i % 977}" for i in range(rows)]),
            "amount": pa.array([i * 0.25 for i in range(rows)]),
        }
    )
    pacsv.write_csv(table, path)


@pytest.fixture
def setup(tmp_path: Path, pg_url: str) -> tuple[Batchpilot, Path]:
    folder = tmp_path / "pipeline"
    folder.mkdir()
    write_csv(folder / "facts.csv", ROWS)
    (folder / "kill_me.yaml").write_text(PIPELINE)
    return Batchpilot(tmp_path / "home", folder, {"BATCHPILOT_CONN_DWH": pg_url}), folder


def wait_for_task_state(
    bp: Batchpilot, run_id: str, task: str, state: TaskState, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(t.task_id == task and t.state is state for t in bp.store().get_tasks(run_id)):
            return
        time.sleep(0.01)
    raise AssertionError(f"{task} never reached {state}")


def wait_for_copy(dsn: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query ILIKE 'COPY%%facts%%' "
                "AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if busy:
                return
            time.sleep(0.005)
    raise AssertionError("the COPY never started")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.25])
def test_sigkill_mid_load_then_resume_loads_every_row_once(setup, pg_dsn: str, delay: float):
    bp, folder = setup
    proc = bp.start("run", str(folder / "kill_me.yaml"), "-q")
    run_id = bp.wait_for_new_run(set(), proc)
    assert run_id is not None
    wait_for_task_state(bp, run_id, "load", TaskState.RUNNING)
    wait_for_copy(pg_dsn)  # the rows are streaming into PostgreSQL right now
    time.sleep(delay)
    assert kill(proc), "the run finished before it could be killed"

    code, out, err = bp.run("resume", run_id, "-o", "json")
    if code == 2 and "already succeeded" in err:
        # the COPY ended within the delay and the process died after the run's end (while
        # it wrote its summary): nothing to resume, and the rows must still be there once
        result = {"status": "success", "tasks": {"extract": {"attempts": 1}}}
    else:
        assert code == 0 and out, f"resume exited {code}: {err}"
        result = json.loads(out)
    assert result["status"] == "success", result
    with psycopg.connect(pg_dsn) as conn:
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM facts").fetchone()
        loads = conn.execute(
            "SELECT count(*) FROM batchpilot_loads WHERE run_id = %s", (run_id,)
        ).fetchone()[0]
    assert (count, distinct) == (ROWS, ROWS)
    assert loads == 1
    assert result["tasks"]["extract"]["attempts"] == 1  # its output was reused
