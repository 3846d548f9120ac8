"""Template values cannot change a SQL statement: hostile params and dates, through the
Python API and the command line, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from batchpilot import Pipeline, RunStatus, Task
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.errors import SpecErrors
from batchpilot.settings import Settings
from batchpilot.spec.templating import render_config
from batchpilot.steps.registry import default_registry
from tests.cli_runner import Cli

from .helpers import make_context, output_table

#: each tries to end the literal or the statement and drop the victim table
HOSTILE_VALUES = [
    "z'; DROP TABLE victim; --",
    "x' OR '1'='1",
    "'); DROP TABLE victim; --",
    "\u2019; DROP TABLE victim; --",  # right single quotation mark
    "\u02bc); DROP TABLE victim; --",  # modifier letter apostrophe
    "\uff07; DROP TABLE victim; --",  # fullwidth apostrophe
    "a\n'; DROP TABLE victim; --\nb",
    "*/ ; DROP TABLE victim; /*",
    "-- '; DROP TABLE victim",
    "$$; DROP TABLE victim; $$",
    '"; DROP TABLE victim; --',
    ":ds'; DROP TABLE victim; --",
    "100% sure %s'; DROP TABLE victim; --",
    "",
]

#: one row per way of writing the value: as a literal, inside quotes, as a bind
SCRIPT = """
INSERT INTO seen VALUES ('code', {{ params.x }});
INSERT INTO seen VALUES ('quoted', '{{ params.x }}');
INSERT INTO seen VALUES ('bind', :x)
"""


class Database:
    """A real database with a victim table, a table of seen values, and a way to read it."""

    def __init__(self, url: str, connect: Callable[[], Any]) -> None:
        self.url = url
        self._connect = connect
        self.execute("CREATE TABLE victim (id INTEGER)")
        self.execute("INSERT INTO victim VALUES (1)")
        self.execute("CREATE TABLE seen (how TEXT, v TEXT)")

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        conn = self._connect()
        try:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def victim_rows(self) -> list[tuple[Any, ...]]:
        return self.execute("SELECT id FROM victim")

    def seen(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for how, value in self.execute("SELECT how, v FROM seen"):
            found.setdefault(how, []).append(value)
        return found


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        path = tmp_path / "target.db"
        return Database(f"sqlite:///{path}", lambda: sqlite3.connect(path))
    dsn = request.getfixturevalue("pg_dsn")
    return Database(request.getfixturevalue("pg_url"), lambda: psycopg.connect(dsn))


def settings_for(tmp_path: Path, database: Database) -> Settings:
    return Settings(
        home=tmp_path / "home",
        connections=ConnectionRegistry([Connection("target", database.url, origin="test")]),
    )


def test_hostile_params_through_the_python_api_are_stored_exactly(
    tmp_path: Path, database: Database
):
    pipeline = Pipeline("inject", params={"x": ""})
    pipeline.add_task(Task("write", type="sql", config={"connection": "target", "sql": SCRIPT}))
    settings = settings_for(tmp_path, database)

    for value in HOSTILE_VALUES:
        result = pipeline.run({"x": value}, settings=settings)
        assert result.status is RunStatus.SUCCESS, (value, result.tasks["write"].error)

    assert database.victim_rows() == [(1,)]
    assert database.seen() == {how: HOSTILE_VALUES for how in ("code", "quoted", "bind")}


@pytest.mark.parametrize("value", ["\\'; DROP TABLE victim; --", "%(x)s'; DROP TABLE victim"])
def test_a_value_some_driver_would_misread_is_refused_before_the_run_and_binds_carry_it(
    tmp_path: Path, database: Database, value: str
):
    settings = settings_for(tmp_path, database)
    quoted = Pipeline("inject", params={"x": ""})
    quoted.add_task(Task("write", type="sql", config={"connection": "target", "sql": SCRIPT}))
    with pytest.raises(SpecErrors, match="pass it as a bind parameter"):
        quoted.run({"x": value}, settings=settings)

    bound = Pipeline("inject", params={"x": ""})
    bound.add_task(
        Task(
            "write",
            type="sql",
            config={"connection": "target", "sql": "INSERT INTO seen VALUES ('bind', :x)"},
        )
    )
    assert bound.run({"x": value}, settings=settings).status is RunStatus.SUCCESS
    assert database.victim_rows() == [(1,)]
    assert database.seen() == {"bind": [value]}


def test_extract_sql_reads_hostile_values_back_exactly(tmp_path: Path, database: Database):
    step_class = default_registry().get("extract.sql")
    template = {
        "connection": "target",
        "query": "SELECT {{ params.x }} AS code, '{{ params.x }}' AS quoted, :x AS bound",
    }
    for number, value in enumerate(HOSTILE_VALUES):
        context = {"params": {"x": value}, "ds": "2026-11-20", "run_id": "r"}
        config = render_config(template, context, config_model=step_class.Config)
        ctx = make_context(tmp_path, connections={"target": database.url}, task_id=f"q{number}")
        table = output_table(step_class(step_class.Config(**config)).run(ctx))
        assert table.to_pylist() == [{"code": value, "quoted": value, "bound": value}]
    assert database.victim_rows() == [(1,)]


def test_ds_and_run_id_are_bind_parameters_of_sql_steps(tmp_path: Path, database: Database):
    pipeline = Pipeline("binds")
    pipeline.add_task(
        Task(
            "write",
            type="sql",
            config={
                "connection": "target",
                "sql": "INSERT INTO seen VALUES (:run_id, :ds)",
            },
        )
    )
    result = pipeline.run(ds="2026-11-20", settings=settings_for(tmp_path, database))
    assert result.status is RunStatus.SUCCESS
    assert database.seen() == {result.run_id: ["2026-11-20"]}


def write_pipeline(tmp_path: Path, url: str, sql: str) -> Path:
    path = tmp_path / "inject.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "inject",
                "params": {"x": ""},
                "connections": {"target": url},
                "nodes": [
                    {"id": "write", "type": "sql", "config": {"connection": "target", "sql": sql}}
                ],
            }
        )
    )
    return path


@pytest.mark.parametrize("value", [HOSTILE_VALUES[0], HOSTILE_VALUES[3], HOSTILE_VALUES[9]])
def test_hostile_param_on_the_command_line_is_stored_exactly(
    cli: Cli, tmp_path: Path, database: Database, value: str
):
    path = write_pipeline(tmp_path, database.url, SCRIPT)
    result = cli("run", str(path), "--param", f"x={value}", "-o", "json")
    assert result.code == 0, result.stderr
    assert database.victim_rows() == [(1,)]
    assert database.seen() == {"code": [value], "quoted": [value], "bind": [value]}


def test_hostile_date_on_the_command_line_cannot_drop_a_table(
    cli: Cli, tmp_path: Path, database: Database
):
    value = "2026-11-20'; DROP TABLE victim; --"
    sql = (
        "INSERT INTO seen VALUES ('code', {{ ds }});\n"
        "INSERT INTO seen VALUES ('quoted', '{{ ds }}')"
    )
    result = cli("run", str(write_pipeline(tmp_path, database.url, sql)), "--date", value)
    assert database.victim_rows() == [(1,)]
    # a date that is not a date may be refused up front; if it runs, it is only text
    assert result.code == 2 or database.seen() == {"code": [value], "quoted": [value]}


def test_hostile_date_cannot_read_files_through_a_duckdb_transform(cli: Cli, tmp_path: Path):
    path = tmp_path / "read.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "read",
                "nodes": [
                    {
                        "id": "leak",
                        "type": "transform.sql",
                        "config": {"query": "SELECT '{{ ds }}' AS day"},
                    },
                ],
            }
        )
    )
    value = "x' AS day UNION ALL SELECT content FROM read_text('/etc/passwd') --"
    result = cli("run", str(path), "--date", value, "-o", "json")
    assert "root:" not in result.stdout + result.stderr
    if result.code == 0:
        assert result.json()["tasks"]["leak"]["rows_out"] == 1
    else:
        assert result.code == 2


def test_compensations_and_callbacks_render_their_sql_safely_too(
    tmp_path: Path, database: Database
):
    def boom() -> None:
        raise RuntimeError("the run fails, so the write is compensated")

    def sql_action(how: str) -> Task:
        return Task(
            f"{how}_action",
            type="sql",
            config={
                "connection": "target",
                "sql": f"INSERT INTO seen VALUES ('{how}', {{{{ params.x }}}})",
            },
        )

    pipeline = Pipeline("saga", params={"x": ""})
    write = Task(
        "write",
        type="sql",
        config={"connection": "target", "sql": "INSERT INTO seen VALUES ('write', :x)"},
        compensate=sql_action("compensate"),
    )
    fail = Task("fail", run=boom, on_failure=sql_action("on_failure"))
    fail.depends_on(write)
    pipeline.add_tasks([write, fail])
    value = HOSTILE_VALUES[0]

    result = pipeline.run({"x": value}, settings=settings_for(tmp_path, database))

    assert result.status is RunStatus.FAILED
    assert database.victim_rows() == [(1,)]
    assert database.seen() == {"write": [value], "compensate": [value], "on_failure": [value]}
