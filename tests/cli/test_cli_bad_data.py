"""Real runs over careless files: text never lands as bytes, and an empty file never
empties a table, on PostgreSQL (COPY, started early) and SQLite alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from batchpilot.connections import Connection
from tests.cli_runner import Cli

PIPELINE = """
name: people_etl
default_args: {{retries: 2, retry_delay: 0}}
nodes:
  - id: extract
    type: extract.csv
    config: {{path: "{{{{ pipeline_dir }}}}/people.csv", {extract_options}}}
  - id: to_postgres
    type: load.postgres
    config: {{connection: pg, table: people, mode: replace, {load_options}}}
    depends_on: [extract]
  - id: to_sqlite
    type: load.sql
    config: {{connection: lite, table: people, mode: replace, {load_options}}}
    depends_on: [extract]
"""


@pytest.fixture
def project(tmp_path: Path, cli: Cli, pg_url: str) -> Path:
    """A pipeline folder whose two targets already hold people(ann, bob)."""
    cli.env["BATCHPILOT_CONN_PG"] = pg_url
    cli.env["BATCHPILOT_CONN_LITE"] = f"sqlite:///{tmp_path / 'lite.db'}"
    (tmp_path / "people.csv").write_text("id,name\n1,ann\n2,bob\n")
    write_pipeline(tmp_path)
    assert cli("run", str(tmp_path / "p.yaml")).code == 0
    return tmp_path


def write_pipeline(folder: Path, extract_options: str = "", load_options: str = "") -> None:
    text = PIPELINE.format(extract_options=extract_options, load_options=load_options)
    (folder / "p.yaml").write_text(text)


def tables(cli: Cli) -> dict[str, list[tuple]]:
    """The rows of people in PostgreSQL and in SQLite."""
    pg = Connection("pg", cli.env["BATCHPILOT_CONN_PG"]).libpq_dsn()
    with psycopg.connect(pg) as conn:
        in_pg = conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
    lite = cli.env["BATCHPILOT_CONN_LITE"].removeprefix("sqlite:///")
    with sqlite3.connect(lite) as conn:
        in_lite = conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
    return {"postgres": in_pg, "sqlite": in_lite}


def test_a_latin_1_file_read_as_utf_8_fails_once_and_loads_nothing(cli: Cli, project: Path):
    (project / "people.csv").write_bytes("id,name\n1,Jér\n".encode("latin-1"))
    result = cli("run", str(project / "p.yaml"), "-o", "json")
    assert result.code == 1
    extract = result.json()["tasks"]["extract"]
    assert (extract["state"], extract["attempts"]) == ("failed", 1)  # bad data: no retry
    assert extract["error"].startswith(f"cannot read CSV {project}/people.csv")
    assert "line 2 (byte 11), column 'name', is not valid utf-8 (bytes e9)" in extract["error"]
    assert "'encoding: latin-1'" in extract["error"]
    assert tables(cli) == {"postgres": [(1, "ann"), (2, "bob")], "sqlite": [(1, "ann"), (2, "bob")]}


def test_a_declared_encoding_stores_text(cli: Cli, project: Path):
    (project / "people.csv").write_bytes("id,name\n1,Jér\n2,Zoë\n".encode("latin-1"))
    write_pipeline(project, extract_options="encoding: latin-1")
    assert cli("run", str(project / "p.yaml")).code == 0
    assert tables(cli) == {"postgres": [(1, "Jér"), (2, "Zoë")], "sqlite": [(1, "Jér"), (2, "Zoë")]}


def test_a_header_only_file_does_not_empty_the_tables(cli: Cli, project: Path):
    (project / "people.csv").write_text("id,name\n")
    result = cli("run", str(project / "p.yaml"), "-o", "json")
    assert result.code == 1
    for task in ("to_postgres", "to_sqlite"):
        state = result.json()["tasks"][task]
        assert (state["state"], state["attempts"]) == ("failed", 1)
        assert state["error"] == (
            f"task {task}: the input has 0 rows, so mode 'replace' would "
            "empty table people; it was left as it was. Set 'allow_empty: true' on this load "
            "if an empty table is what you want"
        )
    assert tables(cli) == {"postgres": [(1, "ann"), (2, "bob")], "sqlite": [(1, "ann"), (2, "bob")]}


def test_allow_empty_lets_a_header_only_file_empty_the_tables(cli: Cli, project: Path):
    (project / "people.csv").write_text("id,name\n")
    write_pipeline(project, load_options="allow_empty: true")
    assert cli("run", str(project / "p.yaml")).code == 0
    assert tables(cli) == {"postgres": [], "sqlite": []}
