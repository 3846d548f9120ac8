"""load.sql: chunked INSERTs via SQLAlchemy, one transaction, exactly once (SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from batchpilot.errors import PermanentStepError

from .helpers import make_context, run_step

PEOPLE = pa.table({"id": [1, 2, 3], "name": ["ann", None, ""]})


def sqlite_rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def load(tmp_path: Path, url: str, data: pa.Table, run_id: str = "run-1", **config):
    ctx = make_context(tmp_path, {"up": data}, {"db": url}, run_id=run_id, task_id="load")
    return run_step("load.sql", ctx, connection="db", **config)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "target.db"


def test_append_creates_the_table_and_keeps_null_apart_from_empty(tmp_path, db):
    result = load(tmp_path, f"sqlite:///{db}", PEOPLE, table="people")

    assert sqlite_rows(db, "SELECT id, name FROM people ORDER BY id") == [
        (1, "ann"),
        (2, None),
        (3, ""),
    ]
    assert result.metadata == {
        "mode": "append",
        "table": "people",
        "rows": 3,
        "already_loaded": False,
    }
    assert sqlite_rows(db, "SELECT pipeline, run_id, task_id, rows FROM batchpilot_loads") == [
        ("test_pipeline", "run-1", "load", 3)
    ]


def test_append_load_twice_in_same_run_loads_once(tmp_path, db):
    load(tmp_path, f"sqlite:///{db}", PEOPLE, table="people")
    again = load(tmp_path, f"sqlite:///{db}", PEOPLE, table="people")

    assert again.metadata["already_loaded"] is True
    assert again.rows_out == 3
    assert sqlite_rows(db, "SELECT count(*) FROM people") == [(3,)]


def test_replace_deletes_then_inserts(tmp_path, db):
    load(tmp_path, f"sqlite:///{db}", PEOPLE, table="people", run_id="run-1")
    load(
        tmp_path,
        f"sqlite:///{db}",
        PEOPLE.slice(0, 1),
        table="people",
        mode="replace",
        run_id="run-2",
    )

    assert sqlite_rows(db, "SELECT id FROM people") == [(1,)]


def test_upsert_updates_changed_rows_and_inserts_new_ones(tmp_path, db):
    url = f"sqlite:///{db}"
    load(tmp_path, url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-1")
    changes = pa.table({"id": [2, 4], "name": ["bob", "dee"]})
    result = load(tmp_path, url, changes, table="people", mode="upsert", key=["id"], run_id="run-2")

    assert sqlite_rows(db, "SELECT id, name FROM people ORDER BY id") == [
        (1, "ann"),
        (2, "bob"),
        (3, ""),
        (4, "dee"),
    ]
    assert result.metadata["key"] == ["id"]


def test_failed_load_leaves_target_and_ledger_unchanged(tmp_path, db):
    url = f"sqlite:///{db}"
    load(tmp_path, url, PEOPLE, table="people", mode="upsert", key=["id"], run_id="run-1")
    # 30k rows span several INSERT chunks; the last one breaks the primary key
    ids = [*range(100, 30_100), 100]
    bad = pa.table({"id": ids, "name": ["x"] * len(ids)})

    with pytest.raises(PermanentStepError, match="people"):
        load(tmp_path, url, bad, table="people", mode="replace", run_id="run-2")

    assert sqlite_rows(db, "SELECT count(*) FROM people") == [(3,)]
    assert sqlite_rows(db, "SELECT run_id FROM batchpilot_loads") == [("run-1",)]


def test_failed_first_load_does_not_leave_a_created_table(tmp_path, db):
    no_key = pa.table({"id": [1, None], "name": ["a", "b"]})

    with pytest.raises(PermanentStepError, match="NOT NULL"):
        load(tmp_path, f"sqlite:///{db}", no_key, table="people", mode="upsert", key=["id"])

    assert sqlite_rows(db, "SELECT name FROM sqlite_master WHERE name = 'people'") == []


def test_input_column_missing_from_table_is_named(tmp_path, db):
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE people (id INTEGER)")

    with pytest.raises(PermanentStepError, match="input column 'name' is not in table people"):
        load(tmp_path, f"sqlite:///{db}", PEOPLE, table="people")


@pytest.mark.postgres
def test_load_sql_upserts_into_postgres_schema_table(tmp_path, pg_url, pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE SCHEMA mart")
    load(tmp_path, pg_url, PEOPLE, table="mart.people", mode="upsert", key=["id"], run_id="run-1")
    load(
        tmp_path,
        pg_url,
        pa.table({"id": [3], "name": ["cy"]}),
        table="mart.people",
        mode="upsert",
        key=["id"],
        run_id="run-2",
    )

    with psycopg.connect(pg_dsn) as conn:
        got = conn.execute("SELECT id, name FROM mart.people ORDER BY id").fetchall()
        ledger = conn.execute("SELECT run_id, rows FROM batchpilot_loads ORDER BY run_id")
        assert ledger.fetchall() == [("run-1", 3), ("run-2", 1)]
    assert got == [(1, "ann"), (2, None), (3, "cy")]
