"""Named connections: listed with passwords masked, tested for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import Cli


@pytest.fixture
def cli(cli_in_process: Cli) -> Cli:
    return cli_in_process


def test_connections_from_the_environment_and_the_file_are_listed_masked(cli: Cli, home: Path):
    home.mkdir(parents=True, exist_ok=True)
    (home / "connections.yaml").write_text(
        "warehouse: postgresql://etl:file-secret@db.internal:5432/dwh\nlocal: sqlite:////tmp/x.db\n"
    )
    cli.env["BATCHPILOT_CONN_WAREHOUSE"] = "postgresql://etl:env-secret@db2.internal/dwh"
    result = cli("connections", "list", "-o", "json")
    assert result.code == 0
    listed = {c["name"]: c for c in result.json()}
    assert listed["warehouse"]["url"] == "postgresql://etl:***@db2.internal/dwh"  # env wins
    assert listed["warehouse"]["source"] == "$BATCHPILOT_CONN_WAREHOUSE"
    assert listed["local"]["url"] == "sqlite:////tmp/x.db"
    text = cli("connections", "list")
    assert "secret" not in text.stdout + result.stdout


def test_connection_test_answers_for_a_live_database(cli: Cli, pg_url: str):
    cli.env["BATCHPILOT_CONN_DWH"] = pg_url
    result = cli("connections", "test", "dwh")
    assert result.code == 0 and "answered" in result.stdout


def test_an_unreachable_database_fails_in_one_line_without_the_password(cli: Cli):
    cli.env["BATCHPILOT_CONN_DWH"] = "postgresql://etl:hunter2@127.0.0.1:1/dwh?connect_timeout=2"
    result = cli("connections", "test", "dwh")
    assert result.code == 1
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: connection 'dwh' (postgresql://etl:***@127.0.0.1:1")
    assert len(result.stderr.strip().splitlines()) == 1


def test_testing_an_unknown_connection_names_the_known_ones(cli: Cli):
    cli.env["BATCHPILOT_CONN_DWH"] = "sqlite:////tmp/x.db"
    result = cli("connections", "test", "warehouse")
    assert result.code == 2
    assert "unknown connection 'warehouse' (known: dwh)" in result.stderr


def test_a_malformed_connection_is_listed_masked_and_refused_by_name(cli: Cli):
    cli.env["BATCHPILOT_CONN_WAREHOUSE"] = "postgresql://etl:hunter2@db:notaport/dwh"
    cli.env["BATCHPILOT_CONN_LOCAL"] = "sqlite:////tmp/x.db"
    result = cli("connections", "list", "-o", "json")
    assert result.code == 2
    assert {c["name"]: c["url"] for c in result.json()} == {
        "local": "sqlite:////tmp/x.db",
        "warehouse": "postgresql://etl:***@db:notaport/dwh",
    }
    assert result.stderr == (
        "error: connection 'warehouse' ($BATCHPILOT_CONN_WAREHOUSE) is not a valid database "
        "URL: the port 'notaport' is not a number (got postgresql://etl:***@db:notaport/dwh)\n"
    )
    tested = cli("connections", "test", "warehouse")
    assert (tested.code, tested.stderr) == (2, result.stderr)
    assert "hunter2" not in result.stdout + tested.stdout + tested.stderr
