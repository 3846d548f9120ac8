"""load.file: stream the input into a CSV or Parquet file, renamed into place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from batchpilot import Pipeline, RunStatus, Task
from batchpilot.settings import Settings
from tests.cli_runner import Cli

from .helpers import make_context, make_step, run_step

TABLE = pa.table({"id": [1, 2, 3], "name": ["ann", None, ""]})


def test_load_file_writes_csv_and_creates_folders(tmp_path):
    target = tmp_path / "out" / "daily" / "people.csv"
    ctx = make_context(tmp_path, {"up": TABLE})

    result = run_step("load.file", ctx, path=str(target))

    assert target.read_text().splitlines() == ['"id","name"', '1,"ann"', "2,", '3,""']
    assert result.rows_out == 3
    assert result.metadata["format"] == "csv"
    assert [p.name for p in target.parent.iterdir()] == ["people.csv"]


def test_load_file_writes_parquet_from_the_suffix(tmp_path):
    target = tmp_path / "people.parquet"
    ctx = make_context(tmp_path, {"up": TABLE})

    run_step("load.file", ctx, path=str(target))

    assert pq.read_table(target).equals(TABLE)


def test_load_file_explicit_format_overrides_the_suffix(tmp_path):
    target = tmp_path / "people.dat"
    ctx = make_context(tmp_path, {"up": TABLE})

    run_step("load.file", ctx, path=str(target), format="csv")

    assert pacsv.read_csv(target).num_rows == 3


def test_load_file_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "people.csv"
    target.write_text("old content that is much longer than the new one\n" * 100)
    ctx = make_context(tmp_path, {"up": TABLE.slice(0, 1)})

    run_step("load.file", ctx, path=str(target))

    assert target.read_text() == '"id","name"\n1,"ann"\n'


def test_load_file_unknown_suffix_needs_a_format():
    with pytest.raises(ValidationError, match="set format"):
        make_step("load.file", path="out.txt")


# -- where load.file may write -----------------------------------------------------------


def write_pipeline(folder: Path, path_template: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = folder / "export.yaml"
    pipeline.write_text(
        json.dumps(
            {
                "name": "export",
                "params": {"name": "people"},
                "nodes": [
                    {"id": "rows", "type": "transform.sql", "config": {"query": "SELECT 1 AS id"}},
                    {
                        "id": "write",
                        "type": "load.file",
                        "config": {"path": path_template, "format": "csv"},
                        "depends_on": ["rows"],
                    },
                ],
            }
        )
    )
    return pipeline


@pytest.mark.parametrize(
    ("template", "param"),
    [
        ("{{ pipeline_dir }}/out/{{ params.name }}.csv", "../../escaped"),
        ("{{ pipeline_dir }}/{{ params.name }}.csv", "sub/../../outside/escaped"),
        ("{{ params.name }}.csv", "{outside}/escaped"),
    ],
)
def test_a_path_outside_the_roots_is_refused_before_the_run(
    cli: Cli, tmp_path: Path, template: str, param: str
):
    pipeline = write_pipeline(tmp_path / "pipe", template)
    outside = tmp_path / "outside"
    result = cli("run", str(pipeline), "--param", f"name={param.format(outside=outside)}")

    assert result.code == 2, result.stderr
    assert "node 'write', field 'config.path'" in result.stderr
    assert "escaped.csv, which is outside the folders a pipeline may write to" in result.stderr
    assert "BATCHPILOT_OUTPUT_ROOTS" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("runs", "list", "-o", "json").json() == []
    assert not list(tmp_path.rglob("escaped.csv"))


def test_the_refusal_names_the_resolved_path(cli: Cli, tmp_path: Path):
    pipeline = write_pipeline(tmp_path / "pipe", "{{ pipeline_dir }}/out/{{ params.name }}.csv")

    result = cli("run", str(pipeline), "--param", "name=../../escaped")

    assert f"writes to {tmp_path / 'escaped.csv'}," in result.stderr


def test_validate_refuses_a_path_outside_the_roots(cli: Cli, tmp_path: Path):
    pipeline = write_pipeline(tmp_path / "pipe", "/etc/batchpilot-escaped.csv")

    result = cli("validate", str(pipeline))

    assert result.code == 2
    assert "writes to /etc/batchpilot-escaped.csv" in result.stdout + result.stderr


def test_a_symlink_inside_the_pipeline_folder_pointing_outside_is_refused(cli: Cli, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    pipeline = write_pipeline(tmp_path / "pipe", "{{ pipeline_dir }}/link/people.csv")
    (tmp_path / "pipe" / "link").symlink_to(outside)

    result = cli("run", str(pipeline))

    assert result.code == 2
    assert f"writes to {outside / 'people.csv'}," in result.stderr
    assert list(outside.iterdir()) == []


def test_paths_under_the_pipeline_folder_the_home_and_the_configured_roots_are_written(
    cli: Cli, tmp_path: Path, home: Path
):
    extra = tmp_path / "exports"
    other = tmp_path / "more"
    cli.env["BATCHPILOT_OUTPUT_ROOTS"] = os.pathsep.join([str(extra), str(other)])
    pipeline = write_pipeline(tmp_path / "pipe", "{{ params.name }}.csv")

    for target in (
        tmp_path / "pipe" / "out" / "a",
        home / "exports" / "b",
        extra / "c",
        other / "deep" / "d",
    ):
        result = cli("run", str(pipeline), "--param", f"name={target}")
        assert result.code == 0, result.stderr
        assert (target.parent / f"{target.name}.csv").exists()


def test_a_relative_output_root_is_refused(cli: Cli, tmp_path: Path):
    cli.env["BATCHPILOT_OUTPUT_ROOTS"] = "exports"
    pipeline = write_pipeline(tmp_path / "pipe", "{{ pipeline_dir }}/people.csv")

    result = cli("run", str(pipeline))

    assert result.code == 2
    assert "BATCHPILOT_OUTPUT_ROOTS must list absolute folders" in result.stderr


def test_settings_read_the_output_roots_at_the_edge(tmp_path: Path):
    settings = Settings.from_env(
        {
            "BATCHPILOT_HOME": str(tmp_path / "home"),
            "BATCHPILOT_OUTPUT_ROOTS": f"{tmp_path / 'a'}{os.pathsep}{os.pathsep}{tmp_path / 'b'}",
        }
    )
    assert settings.output_roots == (tmp_path / "home", tmp_path / "a", tmp_path / "b")


def test_a_path_that_leaves_the_roots_only_at_run_time_fails_the_task_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "pipe"
    outside = tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    monkeypatch.chdir(folder)  # a Python pipeline's folder is the working folder

    def link_then_rows() -> pa.Table:
        (folder / "out").symlink_to(outside)
        return TABLE

    pipeline = Pipeline("export")
    rows = Task("rows", run=link_then_rows)
    write = Task(
        "write",
        type="load.file",
        config={"path": "{{ pipeline_dir }}/out/people.csv"},
        retries=3,
    )
    write.depends_on(rows)
    pipeline.add_tasks([rows, write])

    result = pipeline.run(settings=Settings(home=tmp_path / "home"))

    assert result.status is RunStatus.FAILED
    assert result.tasks["write"].attempts == 1
    assert f"writes to {outside / 'people.csv'}," in (result.tasks["write"].error or "")
    assert list(outside.iterdir()) == []
