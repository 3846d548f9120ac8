"""Typed parameters end to end: ``--param`` on the command line and ``Pipeline.run(params=…)``
are checked against the declarations before a run exists, and tasks get typed values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchpilot import Pipeline, Task
from batchpilot.connections import ConnectionRegistry
from batchpilot.errors import SpecError, SpecErrors
from batchpilot.settings import Settings
from batchpilot.store import RunStore
from tests.cli_runner import Cli

PIPELINE = """
name: typed
params:
  min_amount: 0
  count: {type: integer, minimum: 1, default: 5}
  region: {enum: [north, south], description: sales region}
  code: {type: string, pattern: "^[0-9]{3}$", default: "007"}
nodes:
  - id: record
    type: python
    config: {callable: "MODULE:record"}
"""

RECORDER = """
import json
from pathlib import Path


def record(params):
    Path(__file__).with_name("seen.json").write_text(json.dumps(params))
"""


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    # one module name per test: an in-process run imports it into this interpreter
    module = "recorder_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name)
    (tmp_path / f"{module}.py").write_text(RECORDER)
    path = tmp_path / "typed.yaml"
    path.write_text(PIPELINE.replace("MODULE", module))
    return path


def seen(pipeline_file: Path) -> dict[str, Any]:
    return json.loads(pipeline_file.with_name("seen.json").read_text())


def test_command_line_values_reach_tasks_with_their_declared_types(
    cli_in_process: Cli, pipeline_file: Path
):
    result = cli_in_process(
        "run",
        str(pipeline_file),
        *("-p", "region=south", "-p", "count=12", "-p", "code=012", "-p", "min_amount=10"),
    )
    assert result.code == 0, result.stderr
    assert seen(pipeline_file) == {"min_amount": 10, "count": 12, "region": "south", "code": "012"}


def test_defaults_fill_what_the_command_line_leaves_out(cli_in_process: Cli, pipeline_file: Path):
    assert cli_in_process("run", str(pipeline_file), "-p", "region=north").code == 0
    assert seen(pipeline_file) == {"min_amount": 0, "count": 5, "region": "north", "code": "007"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "field 'params.region': parameter 'region' is required"),
        (("-p", "region=east"), "field 'params.region': 'east' does not fit: allowed values"),
        (("-p", "region=north", "-p", "count=0"), "'params.count': 0 does not fit: the minimum"),
        (("-p", "region=north", "-p", "count=many"), "'many' is not a whole number"),
        (("-p", "region=north", "-p", "code=7"), "must match the pattern '^[0-9]{3}$'"),
        (
            ("-p", "region=north", "-p", "nosuch=1"),
            "unknown parameter 'nosuch' (known: min_amount, count, region, code)",
        ),
        (
            ("-p", "region=north", "-p", "__trigger__=/etc/passwd"),
            "field 'params.__trigger__': parameter '__trigger__' is reserved for the trigger",
        ),
    ],
)
def test_a_command_line_value_that_does_not_fit_exits_2_before_any_run(
    cli_in_process: Cli, pipeline_file: Path, args: tuple[str, ...], message: str
):
    result = cli_in_process("run", str(pipeline_file), *args)
    assert result.code == 2
    assert message in result.stderr and str(pipeline_file) in result.stderr
    assert cli_in_process("runs", "list", "-o", "json").json() == []


def test_validate_accepts_a_pipeline_with_required_parameters(
    cli_in_process: Cli, pipeline_file: Path
):
    result = cli_in_process("validate", str(pipeline_file))
    assert result.code == 0, result.stdout


def python_pipeline(got: dict[str, Any]) -> Pipeline:
    def record(params: dict[str, Any]) -> None:
        got.update(params)

    pipeline = Pipeline(
        "typed",
        params={"count": {"type": "integer", "minimum": 1, "default": 5}, "label": "daily"},
    )
    pipeline.add_task(Task("record", run=record))
    return pipeline


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", workers=2, connections=ConnectionRegistry())


def test_the_python_api_checks_params_with_the_same_declarations(settings: Settings):
    got: dict[str, Any] = {}
    pipeline = python_pipeline(got)
    assert pipeline.run({"count": 3}, settings=settings).status.value == "success"
    assert got == {"count": 3, "label": "daily"}
    for bad, reason in (
        ({"count": 0}, "the minimum is 1"),
        ({"count": "3"}, "expected type integer"),
        ({"nosuch": 1}, "unknown parameter 'nosuch' (known: count, label)"),
    ):
        with pytest.raises(SpecErrors) as caught:
            pipeline.run(bad, settings=settings)
        assert reason in str(caught.value)
    assert len(RunStore.for_home(settings.home).list_runs()) == 1  # only the good run


@pytest.mark.parametrize(("workers", "ds"), [(0, None), (-1, None), (None, "yesterday")])
def test_the_python_api_refuses_bad_workers_and_dates_before_any_run(
    settings: Settings, workers: int | None, ds: str | None
):
    with pytest.raises(SpecError):
        python_pipeline({}).run(settings=settings, workers=workers, ds=ds)
    assert RunStore.for_home(settings.home).list_runs() == []
