"""Atomic groups: sql nodes sharing ``transaction:`` commit together or not at all."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

import batchpilot
from batchpilot import RunStatus, TaskState
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.runs import start_run
from batchpilot.errors import SpecErrors
from batchpilot.settings import Settings
from batchpilot.spec import build_pipeline
from batchpilot.store import RunStore
from tests.resilience.harness import Batchpilot, kill


def group_pipeline(third_sql: str, *, group_b: str = "g", connection_c: str = "db") -> dict:
    return {
        "name": "batch",
        "nodes": [
            {
                "id": "setup",
                "type": "sql",
                "config": {
                    "connection": "db",
                    "sql": "CREATE TABLE IF NOT EXISTS ledger (id INT PRIMARY KEY, note TEXT)",
                },
            },
            {
                "id": "a",
                "type": "sql",
                "transaction": "g",
                "depends_on": ["setup"],
                "config": {"connection": "db", "sql": "INSERT INTO ledger VALUES (1, 'a')"},
            },
            {
                "id": "b",
                "type": "sql",
                "transaction": group_b,
                "depends_on": ["a"],
                "config": {"connection": "db", "sql": "INSERT INTO ledger VALUES (2, 'b')"},
            },
            {
                "id": "c",
                "type": "sql",
                "transaction": "g",
                "depends_on": ["b"],
                "config": {"connection": connection_c, "sql": third_sql},
            },
            {"id": "after", "type": "empty", "depends_on": ["c"]},
        ],
    }


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target.db'}"
    return request.getfixturevalue("pg_url")


def ledger(url: str) -> list[tuple]:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT id, note FROM ledger ORDER BY id").fetchall()
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT id, note FROM ledger ORDER BY id").fetchall()


def run(document: dict, settings: Settings, url: str):
    settings = Settings(
        home=settings.home,
        database_url=settings.database_url,
        connections=ConnectionRegistry([Connection("db", url), Connection("other", url)]),
    )
    store = RunStore.for_home(settings.home, settings.database_url)
    return start_run(build_pipeline(document), settings=settings, store=store)


def test_a_group_commits_after_its_last_member(settings: Settings, db_url: str):
    result = run(group_pipeline("INSERT INTO ledger VALUES (3, 'c')"), settings, db_url)
    assert result.status is RunStatus.SUCCESS
    assert ledger(db_url) == [(1, "a"), (2, "b"), (3, "c")]


def test_when_a_member_fails_nothing_of_the_group_remains(settings: Settings, db_url: str):
    result = run(group_pipeline("INSERT INTO ledger VALUES (1, 'duplicate key')"), settings, db_url)
    assert result.status is RunStatus.FAILED
    assert ledger(db_url) == []
    states = {t: r.state for t, r in result.tasks.items()}
    assert states == {
        "setup": TaskState.SUCCESS,
        "a": TaskState.FAILED,
        "b": TaskState.FAILED,
        "c": TaskState.FAILED,
        "after": TaskState.SKIPPED,
    }
    assert result.tasks["a"].error == "rolled back: transaction group 'g' failed at 'c'"


def test_a_group_on_two_connections_is_refused_naming_node_and_field(settings: Settings):
    with pytest.raises(SpecErrors) as info:
        run(group_pipeline("SELECT 1", connection_c="other"), settings, "sqlite:///x.db")
    error = info.value.errors[0]
    assert (error.node_id, error.field) == ("c", "config.connection")
    assert "spans two connections" in error.reason


def test_a_group_must_be_a_chain_of_sql_steps(settings: Settings):
    document = group_pipeline("SELECT 1", group_b="other_group")
    with pytest.raises(SpecErrors) as info:
        run(document, settings, "sqlite:///x.db")
    assert info.value.errors[0].node_id == "c"
    assert "must be a chain" in info.value.errors[0].reason

    document = group_pipeline("SELECT 1")
    document["nodes"][4]["transaction"] = "g"
    with pytest.raises(SpecErrors) as info:
        run(document, settings, "sqlite:///x.db")
    refused = [e for e in info.value.errors if (e.node_id, e.field) == ("after", "transaction")]
    assert len(refused) == 1
    assert "holds only steps that share a database transaction" in refused[0].reason
    assert "this node is empty" in refused[0].reason


CRASH_PIPELINE = """
name: crash_between
nodes:
  - id: a
    type: sql
    transaction: g
    config: {connection: db, sql: "INSERT INTO ledger VALUES (1, 'a')"}
  - id: b
    type: sql
    transaction: g
    depends_on: [a]
    config:
      connection: db
      sql: |
        LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;
        INSERT INTO ledger VALUES (2, 'b');
  - {id: after, type: empty, depends_on: [b]}
"""


def wait_until(dsn: str, sql: str, *args: object) -> tuple:
    """Poll ``sql`` until it returns a row (its table may not exist yet); that row."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute(sql, args).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            if row is not None:
                return row
            time.sleep(0.02)
    raise AssertionError(f"never true: {sql}")


@pytest.fixture
def crash_cli(tmp_path: Path, pg_url: str, pg_dsn: str) -> Batchpilot:
    """The CLI on a pipeline whose group's last member ``b`` waits for the table ``gate``;
    state store and target in one PostgreSQL database."""
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "crash_between.yaml").write_text(CRASH_PIPELINE)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id INT PRIMARY KEY, note TEXT); CREATE TABLE gate ()")
    cli = Batchpilot(
        tmp_path / "home",
        folder,
        {"BATCHPILOT_CONN_DB": pg_url, "BATCHPILOT_DATABASE_URL": pg_url},
    )
    # the harness puts only the pipeline folder on the path: add the package under test
    cli.env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(batchpilot.__file__).parents[1]), str(folder)]
    )
    return cli


def start_until_b_waits(cli: Batchpilot, pg_dsn: str, gate: psycopg.Connection):
    """Start the run with ``gate`` locked; return it once ``b`` waits for the lock."""
    gate.execute("LOCK TABLE gate IN ACCESS EXCLUSIVE MODE")
    proc = cli.start("run", str(cli.cwd / "crash_between.yaml"), "-q")
    wait_until(
        pg_dsn,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'LOCK TABLE gate%%'",
    )
    (run_id,) = wait_until(pg_dsn, "SELECT run_id FROM bp_runs")
    return proc, run_id


@pytest.mark.slow
def test_resume_after_a_crash_between_the_commit_and_its_record_runs_no_member_again(
    crash_cli: Batchpilot, pg_url: str, pg_dsn: str
):
    """The group committed in the target, then the process died before the state store
    recorded it: ``resume`` reads the group's commit record and counts its members done."""
    with psycopg.connect(pg_dsn) as gate, psycopg.connect(pg_dsn) as store:
        proc, run_id = start_until_b_waits(crash_cli, pg_dsn, gate)
        # Hold b's row in the state store: the engine commits the group, then blocks
        # before it can record b's success.
        store.execute(
            "SELECT 1 FROM bp_task_instances WHERE run_id = %s AND task_id = 'b' FOR UPDATE",
            (run_id,),
        )
        gate.commit()
        (token,) = wait_until(
            pg_dsn, "SELECT token FROM batchpilot_transactions WHERE run_id = %s", run_id
        )
        assert token == "a:1"
        assert kill(proc), "the run ended although its record of b was blocked"
        store.rollback()

    states = {t.task_id: t.state for t in RunStore(pg_url).get_tasks(run_id)}
    assert states["b"] is TaskState.RUNNING  # the store never learnt of the commit
    result = crash_cli.json("resume", run_id)

    assert result["status"] == "success", result
    assert {t: r["state"] for t, r in result["tasks"].items()} == dict.fromkeys(
        ("a", "b", "after"), "success"
    )
    assert (result["tasks"]["a"]["attempts"], result["tasks"]["b"]["attempts"]) == (1, 1)
    assert ledger(pg_url) == [(1, "a"), (2, "b")]


@pytest.mark.slow
def test_resume_after_a_crash_before_the_commit_runs_the_whole_group_again(
    crash_cli: Batchpilot, pg_url: str, pg_dsn: str
):
    """The crash rolled the open group back (a had succeeded inside it): ``resume`` finds
    no commit record and runs every member again, so each row is there once."""
    with psycopg.connect(pg_dsn) as gate:
        proc, run_id = start_until_b_waits(crash_cli, pg_dsn, gate)
        assert kill(proc), "the run ended although b waited for the gate"
        gate.rollback()

    states = {t.task_id: t.state for t in RunStore(pg_url).get_tasks(run_id)}
    assert (states["a"], states["b"]) == (TaskState.SUCCESS, TaskState.RUNNING)
    result = crash_cli.json("resume", run_id)

    assert result["status"] == "success", result
    assert (result["tasks"]["a"]["attempts"], result["tasks"]["b"]["attempts"]) == (2, 2)
    assert ledger(pg_url) == [(1, "a"), (2, "b")]
