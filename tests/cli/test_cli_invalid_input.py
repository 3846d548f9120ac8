"""Bad input gets a clear error naming file, node and field, exit code 2, and no run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import Cli


@pytest.fixture
def cli(cli_in_process: Cli) -> Cli:
    """Input checks need no subprocess: the same app, called in-process."""
    return cli_in_process


def run_invalid(cli: Cli, tmp_path: Path, body: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(body)
    result = cli("run", str(path))
    assert result.code == 2, (result.stdout, result.stderr)
    assert cli("runs", "list", "-o", "json").json() == []  # no run was created
    return result.stderr


def test_yaml_syntax_error_names_the_file_and_line(cli: Cli, tmp_path: Path):
    stderr = run_invalid(cli, tmp_path, "name: p\nnodes:\n  - id: a\n    type: [empty\n")
    assert f"{tmp_path / 'p.yaml'}:" in stderr and "invalid YAML" in stderr


def test_unknown_step_type_lists_the_known_ones(cli: Cli, tmp_path: Path):
    stderr = run_invalid(cli, tmp_path, "name: p\nnodes:\n  - {id: a, type: extract.cvs}\n")
    assert "node 'a', field 'type': unknown step type 'extract.cvs'" in stderr
    assert "extract.csv" in stderr and "load.postgres" in stderr


def test_a_cycle_is_shown_with_its_path(cli: Cli, tmp_path: Path):
    stderr = run_invalid(
        cli,
        tmp_path,
        """
name: p
nodes: [{id: a, type: empty}, {id: b, type: empty}]
edges: [{from: a, to: b}, {from: b, to: a}]
""",
    )
    assert "cycle" in stderr and ("a -> b -> a" in stderr or "b -> a -> b" in stderr)


@pytest.mark.parametrize(
    ("node", "field"),
    [
        ("{id: x, type: extract.csv, config: {}}", "config.path"),
        ("{id: x, type: python, config: {callable: 'no_such_module:f'}}", "config.callable"),
        (
            "{id: x, type: load.postgres, config: {connection: dwh, table: t, mode: upsert}}",
            "config",
        ),
    ],
)
def test_config_errors_name_file_node_and_field(cli: Cli, tmp_path: Path, node: str, field: str):
    stderr = run_invalid(cli, tmp_path, f"name: p\nnodes:\n  - {node}\n")
    assert str(tmp_path / "p.yaml") in stderr
    assert "node 'x'" in stderr and f"field '{field}" in stderr


def test_unknown_connection_is_named_before_running(cli: Cli, tmp_path: Path):
    stderr = run_invalid(
        cli,
        tmp_path,
        """
name: p
nodes:
  - {id: q, type: extract.sql, config: {connection: warehouse, query: "SELECT 1"}}
""",
    )
    assert "node 'q', field 'config.connection': unknown connection 'warehouse'" in stderr
    assert "BATCHPILOT_CONN_WAREHOUSE" in stderr


def test_bad_param_syntax_exits_2(cli: Cli, tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nnodes: [{id: a, type: empty}]\n")
    result = cli("run", str(path), "--param", "novalue")
    assert result.code == 2 and "KEY=VALUE" in result.stderr


def test_validate_checks_every_pipeline_under_a_folder(cli: Cli, tmp_path: Path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "good.yaml").write_text("name: good\nnodes: [{id: a, type: empty}]\n")
    (folder / "bad.yaml").write_text(
        "name: bad\nnodes: [{id: a, type: empty}]\nedges: [{from: a, to: b}]\n"
    )
    (folder / "data.json").write_text('[{"not": "a pipeline"}]')
    result = cli("validate", str(folder))
    assert result.code == 2
    assert f"ok      {folder / 'good.yaml'}" in result.stdout
    assert f"INVALID {folder / 'bad.yaml'}" in result.stdout
    assert "'b' is not a node" in result.stdout
    assert "data.json" not in result.stdout
    report = cli("validate", str(folder), "-o", "json").json()
    assert {(Path(i["path"]).name, i["ok"]) for i in report} == {
        ("good.yaml", True),
        ("bad.yaml", False),
    }
    assert cli("validate", str(folder / "good.yaml")).code == 0


@pytest.mark.parametrize(
    ("node", "field", "reason"),
    [
        (
            "{id: x, type: extract.csv, config: {path: a.csv}, compensate: 'm:f'}",
            "compensate",
            "nothing to compensate",
        ),
        (
            "{id: x, type: empty, on_failure: 'no_such_module:alert'}",
            "on_failure[0].config.callable",
            "cannot import module 'no_such_module'",
        ),
        (
            "{id: x, type: empty, on_success: {type: sql, config: {connection: gone, sql: 'x'}}}",
            "on_success[0].config.connection",
            "unknown connection 'gone'",
        ),
    ],
)
def test_bad_compensations_and_callbacks_name_node_and_field(
    cli: Cli, tmp_path: Path, node: str, field: str, reason: str
):
    stderr = run_invalid(cli, tmp_path, f"name: p\nnodes:\n  - {node}\n")
    assert f"node 'x', field '{field}'" in stderr and reason in stderr
