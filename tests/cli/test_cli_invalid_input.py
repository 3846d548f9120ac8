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


NODE = "nodes: [{id: a, type: empty}]"


def _alias_bomb(levels: int = 7) -> str:
    """A small file whose params alias tree has 9**levels leaves once expanded."""
    lines = [
        "name: p",
        "nodes: [{id: a, type: empty}]",
        "params:",
        "  l0: &l0 [x, x, x, x, x, x, x, x, x]",
    ]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"  l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


#: (case, file name, file text, fragments every error message must hold)
MALFORMED_SPECS = [
    ("no nodes", "p.yaml", "name: p\nnodes: []\n", ["field 'nodes'", "at least one node"]),
    (
        "retries too large",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: empty, retries: 99999999999999999999999999}]\n",
        ["node 'a'", "field 'retries'", "from 0 to 100"],
    ),
    (
        "retries a boolean",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: empty, retries: true}]\n",
        ["node 'a'", "field 'retries'", "whole number"],
    ),
    (
        "compensation retries too large",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: sql, config: {connection: c, sql: x}, "
        "compensate: {type: empty, retries: 1000}}]\n",
        ["node 'a'", "field 'compensate.retries'", "from 0 to 100"],
    ),
    (
        "max_workers 10**21",
        "p.yaml",
        f"name: p\nmax_workers: {10**21}\n{NODE}\n",
        ["field 'max_workers'", "from 1 to 256"],
    ),
    (
        "retry_delay nan",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: empty, retry_delay: nan}]\n",
        ["node 'a'", "field 'retry_delay'", "finite"],
    ),
    (
        "retry_delay inf in default_args",
        "p.yaml",
        f"name: p\ndefault_args: {{retry_delay: inf}}\n{NODE}\n",
        ["field 'default_args.retry_delay'", "finite"],
    ),
    (
        "timeout 1e400",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: empty, timeout: 1e400}]\n",
        ["node 'a'", "field 'timeout'", "finite"],
    ),
    (
        "max_retry_delay negative",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: empty, max_retry_delay: -5}]\n",
        ["node 'a'", "field 'max_retry_delay'", "negative"],
    ),
    (
        "timeout past 7 days",
        "p.yaml",
        "name: p\nnodes: [{id: a, type: empty, timeout: 8d}]\n",
        ["node 'a'", "field 'timeout'", "at most 604800 s"],
    ),
    (
        "duplicate YAML key",
        "p.yaml",
        f"name: p\nname: q\n{NODE}\n",
        ["p.yaml:2", "duplicate key 'name' (first on line 1)"],
    ),
    (
        "duplicate key inside a YAML node",
        "p.yaml",
        "name: p\nnodes:\n  - id: a\n    type: empty\n    id: b\n",
        ["p.yaml:5", "duplicate key 'id'"],
    ),
    (
        "duplicate JSON key",
        "p.json",
        '{"name": "p",\n "nodes": [{"id": "a", "type": "empty"}],\n "name": "q"}',
        ["p.json:3", "duplicate key 'name'"],
    ),
    (
        "node id of 300 characters",
        "p.yaml",
        f"name: p\nnodes: [{{id: {'a' * 300}, type: empty}}]\n",
        ["node '#1'", "field 'id'", "at most 100 characters", "has 300"],
    ),
    (
        "pipeline name of 5,000 characters",
        "p.yaml",
        f"name: {'n' * 5000}\n{NODE}\n",
        ["field 'name'", "at most 100 characters", "has 5000"],
    ),
    (
        "YAML nested 900 levels",
        "p.yaml",
        f"name: p\n{NODE}\nparams: {{x: {'[' * 900}{']' * 900}}}\n",
        ["p.yaml:3", "more than 50 levels deep"],
    ),
    (
        "JSON nested 100,000 levels",
        "p.json",
        '{"name": "p", "nodes": [{"id": "a", "type": "empty"}], "params": {"x": '
        + "[" * 100_000
        + "]" * 100_000
        + "}}",
        ["p.json", "more than 50 levels deep"],
    ),
    (
        "YAML alias bomb of 9**7 leaves",
        "p.yaml",
        _alias_bomb(),
        ["p.yaml", "expands to", "values (YAML aliases included); the limit is 100,000"],
    ),
    (
        "a file over 1 MiB",
        "p.yaml",
        f"name: p\n{NODE}\ndescription: '{'x' * (1024 * 1024)}'\n",
        ["p.yaml", "a pipeline file may be at most 1,048,576 bytes"],
    ),
    (
        "parameter of unknown type",
        "p.yaml",
        f"name: p\n{NODE}\nparams: {{count: {{type: int}}}}\n",
        ["field 'params.count.type'", "unknown type 'int'", "integer"],
    ),
    (
        "parameter default outside its declaration",
        "p.yaml",
        f"name: p\n{NODE}\nparams: {{count: {{type: integer, minimum: 1, default: 0}}}}\n",
        ["field 'params.count.default'", "the minimum is 1"],
    ),
    (
        "parameter declaration with a misspelt key",
        "p.yaml",
        f"name: p\n{NODE}\nparams: {{count: {{type: integer, mininum: 1}}}}\n",
        ["field 'params.count.mininum'", "unknown field"],
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        pytest.param(name, text, fragments, id=case)
        for case, name, text, fragments in MALFORMED_SPECS
    ],
)
def test_a_malformed_spec_is_refused_by_run_and_validate_with_one_line_naming_what_to_fix(
    cli: Cli, tmp_path: Path, name: str, text: str, fragments: list[str]
):
    path = tmp_path / name
    path.write_text(text)
    for result in (cli("run", str(path)), cli("validate", str(path))):
        assert result.code == 2, (result.stdout, result.stderr)
        output = result.stdout + result.stderr
        assert "Traceback" not in output
        messages = [
            line
            for line in output.splitlines()
            if str(path) in line and not line.startswith("INVALID")  # validate's header
        ]
        assert len(messages) == 1, output  # one line, naming the file
        for fragment in fragments:
            assert fragment in messages[0], messages[0]
    assert cli("runs", "list", "-o", "json").json() == []  # no run was recorded


def test_validate_gives_every_file_of_a_folder_its_own_verdict(cli: Cli, tmp_path: Path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for index, (_, name, text, _) in enumerate(MALFORMED_SPECS):
        (folder / f"{index:02d}-{name}").write_text(text)
    (folder / "zz-good.yaml").write_text(f"name: good\n{NODE}\n")
    result = cli("validate", str(folder), "-o", "json")
    assert result.code == 2
    verdicts = {Path(item["path"]).name: item["ok"] for item in result.json()}
    assert len(verdicts) == len(MALFORMED_SPECS) + 1
    assert verdicts.pop("zz-good.yaml") is True
    assert not any(verdicts.values())


@pytest.mark.parametrize("date", ["2026-13-45", "yesterday", "20261120", "2026-02-30", ""])
def test_run_refuses_a_date_that_is_not_a_calendar_date(cli: Cli, tmp_path: Path, date: str):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\n{NODE}\n")
    result = cli("run", str(path), "--date", date)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: field 'date': the logical date {date!r} is not a calendar date: use "
        "YYYY-MM-DD, e.g. 2026-11-20"
    ]
    assert cli("runs", "list", "-o", "json").json() == []


def test_run_renders_a_valid_date_into_ds(cli: Cli, tmp_path: Path):
    path = tmp_path / "p.yaml"
    (tmp_path / "2026-02-28.csv").write_text("id\n1\n")
    path.write_text(
        "name: p\nnodes:\n  - {id: a, type: extract.csv, config: {path: '{{ pipeline_dir }}/"
        "{{ ds }}.csv'}}\n"
    )
    result = cli("run", str(path), "--date", "2026-02-28", "-o", "json")
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "success"


@pytest.mark.parametrize("workers", ["0", "-1", "257"])
def test_run_refuses_workers_outside_1_to_256(cli: Cli, tmp_path: Path, workers: str):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\n{NODE}\n")
    result = cli("run", str(path), "--workers", workers)
    assert result.code == 2
    assert "workers must be a whole number from 1 to 256" in result.stderr
    assert cli("runs", "list", "-o", "json").json() == []


def test_run_refuses_an_unknown_param_and_lists_the_known_ones(cli: Cli, tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nparams: {{min_amount: 0, region: north}}\n{NODE}\n")
    result = cli("run", str(path), "--param", "nosuch=1")
    assert result.code == 2
    assert result.stderr.strip() == (
        f"error: {path}, field 'params.nosuch': unknown parameter 'nosuch' "
        "(known: min_amount, region)"
    )
    assert cli("runs", "list", "-o", "json").json() == []


@pytest.mark.parametrize("workers", ["0", "-1", "257", "four", "2.5"])
def test_a_batchpilot_workers_outside_1_to_256_is_refused_naming_the_variable(
    cli: Cli, tmp_path: Path, workers: str
):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\n{NODE}\n")
    cli.env["BATCHPILOT_WORKERS"] = workers
    for args in (("run", str(path)), ("runs", "list")):
        result = cli(*args)
        assert result.code == 2, args
        assert result.stderr.strip() == (
            f"error: BATCHPILOT_WORKERS must be a whole number from 1 to 256, got {workers!r}"
        )
    del cli.env["BATCHPILOT_WORKERS"]
    assert cli("runs", "list", "-o", "json").json() == []
