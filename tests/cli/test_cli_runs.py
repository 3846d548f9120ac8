"""The CLI runs pipelines and shows what happened, with exit codes 0 / 1 / 2."""

from __future__ import annotations

from pathlib import Path

from tests.cli_runner import Cli

TASK_KEYS = {"state", "attempts", "rows_in", "rows_out", "rows_rejected", "duration_s", "error"}

STEPS_MODULE = """
import pyarrow as pa

def numbers(params):
    return pa.table({"n": list(range(params["count"]))})

def total(inputs):
    return int(sum(inputs["numbers"].column("n").to_pylist()))

def broken():
    raise RuntimeError("the warehouse is read-only\\nsecond line")
"""


def write_pipeline(folder: Path, body: str, name: str = "p.yaml") -> Path:
    (folder / "my_steps.py").write_text(STEPS_MODULE)
    path = folder / name
    path.write_text(body)
    return path


GOOD = """
name: numbers
params: {count: 3}
nodes:
  - {id: numbers, type: python, config: {callable: "my_steps:numbers"}}
  - {id: total, type: python, config: {callable: "my_steps:total"}}
edges: [{from: numbers, to: total}]
"""

BROKEN = """
name: broken
nodes:
  - {id: fine, type: empty}
  - {id: load, type: python, config: {callable: "my_steps:broken"}, depends_on: [fine]}
"""


def test_run_prints_the_run_as_json_and_exits_0(cli: Cli, tmp_path: Path):
    path = write_pipeline(tmp_path, GOOD)
    result = cli("run", str(path), "--param", "count=5", "--output", "json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert set(data) == {"run_id", "pipeline", "status", "error", "slot_delay_s", "tasks"}
    assert data["error"] is None
    assert data["pipeline"] == "numbers" and data["status"] == "success"
    assert set(data["tasks"]) == {"numbers", "total"}
    assert set(data["tasks"]["total"]) == TASK_KEYS
    assert data["tasks"]["numbers"]["rows_out"] == 5
    assert data["tasks"]["total"]["rows_out"] == 10  # 0+1+2+3+4, --param count=5 typed as int

    shown = cli("runs", "show", data["run_id"], "--output", "json")
    assert shown.code == 0 and shown.json() == data


def test_failed_run_exits_1_with_a_one_line_reason_and_the_traceback_in_the_log(
    cli: Cli, tmp_path: Path
):
    path = write_pipeline(tmp_path, BROKEN)
    result = cli("run", str(path), "-o", "json")
    assert result.code == 1
    data = result.json()
    assert data["status"] == "failed"
    assert data["tasks"]["load"]["error"] == "RuntimeError: the warehouse is read-only"
    assert data["tasks"]["fine"]["state"] == "success"

    logs = cli("logs", data["run_id"], "--task", "load")
    assert logs.code == 0
    assert "Traceback" in logs.stdout and "second line" in logs.stdout
    logs_json = cli("logs", data["run_id"], "--output", "json").json()
    assert {(i["task_id"], i["attempt"]) for i in logs_json} == {("fine", 1), ("load", 1)}


def test_runs_list_is_newest_first(cli: Cli, tmp_path: Path):
    good = write_pipeline(tmp_path, GOOD)
    bad = write_pipeline(tmp_path, BROKEN, name="b.yaml")
    first = cli("run", str(good), "-o", "json", "-q").json()
    second = cli("run", str(bad), "-o", "json", "-q").json()
    listed = cli("runs", "list", "--output", "json").json()
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert {"run_id", "pipeline", "status", "started_at", "ended_at"} <= set(listed[0])
    assert listed[0]["status"] == "failed" and listed[1]["status"] == "success"


def test_text_output_shows_the_task_table(cli: Cli, tmp_path: Path):
    result = cli("run", str(write_pipeline(tmp_path, BROKEN)))
    assert result.code == 1
    assert "failed" in result.stdout and "load" in result.stdout
    assert "load: RuntimeError: the warehouse is read-only" in result.stdout
    assert "load failed (attempt 1)" in result.stderr  # progress lines when not a terminal


def test_resume_after_a_fix_reruns_only_the_failed_task(cli: Cli, tmp_path: Path):
    path = write_pipeline(tmp_path, BROKEN)
    failed = cli("run", str(path), "-o", "json").json()
    (tmp_path / "my_steps.py").write_text(
        STEPS_MODULE.replace(
            'raise RuntimeError("the warehouse is read-only\\nsecond line")', "return 7"
        )
    )
    resumed = cli("resume", failed["run_id"], "-o", "json")
    assert resumed.code == 0, resumed.stderr
    data = resumed.json()
    assert data["run_id"] == failed["run_id"] and data["status"] == "success"
    assert data["tasks"]["fine"]["attempts"] == 1
    assert data["tasks"]["load"]["attempts"] == 2 and data["tasks"]["load"]["rows_out"] == 7


def test_actions_on_unknown_runs_say_so_in_one_line_and_exit_2(cli_in_process: Cli):
    cli = cli_in_process  # argument handling only: no run, no subprocess needed
    for args in (
        ["resume", "nope"],
        ["runs", "show", "nope"],
        ["logs", "nope"],
        ["cancel", "nope"],
        ["retry", "nope"],
        ["compensate", "nope"],
    ):
        result = cli(*args)
        assert result.code == 2
        assert result.stderr.strip() == (
            "error: no run with id 'nope' (see 'batchpilot runs list')"
        )


def test_resuming_a_successful_run_is_refused(cli: Cli, tmp_path: Path):
    done = cli("run", str(write_pipeline(tmp_path, GOOD)), "-o", "json").json()
    result = cli("resume", done["run_id"])
    assert result.code == 2 and "already succeeded" in result.stderr


def test_a_python_file_defining_a_pipeline_runs(cli: Cli, tmp_path: Path):
    path = tmp_path / "flow.py"
    path.write_text(
        "from batchpilot import Pipeline, Task\n"
        "pipeline = Pipeline('py_flow')\n"
        "a = Task('a', run=lambda: [{'x': 1}, {'x': 2}])\n"
        "b = Task('b').depends_on(a)\n"
        "pipeline.add_tasks([a, b])\n"
    )
    result = cli("run", str(path), "-o", "json")
    assert result.code == 0, result.stderr
    assert result.json()["tasks"]["a"]["rows_out"] == 2
