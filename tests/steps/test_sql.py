"""sql: a script of statements in one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest
from pydantic import ValidationError

from batchpilot.errors import StepError
from batchpilot.steps.sql import split_script

from .helpers import make_context, make_step, run_step


def test_split_script_honours_quotes_dollar_quoting_and_comments():
    script = """
    -- a comment; with a semicolon
    INSERT INTO t VALUES ('a;b');
    /* block; comment */
    CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;
    -- only a comment;
    SELECT 1
    """
    statements = split_script(script)

    assert [s.sql.splitlines()[0].strip() for s in statements] == [
        "INSERT INTO t VALUES ('a;b');",
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;",
        "SELECT 1",
    ]
    assert [s.line for s in statements] == [3, 5, 7]


def test_sql_script_runs_on_sqlite_with_bind_params(tmp_path):
    db = tmp_path / "x.db"
    ctx = make_context(tmp_path, connections={"db": f"sqlite:///{db}"})

    result = run_step(
        "sql",
        ctx,
        connection="db",
        sql="CREATE TABLE t (id INTEGER, day TEXT);\n"
        "INSERT INTO t VALUES (1, :day), (2, :day);\n"
        "UPDATE t SET id = id + 10 WHERE id = :id;",
        params={"day": "2024-01-01", "id": 2},
    )

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, day FROM t ORDER BY id").fetchall() == [
            (1, "2024-01-01"),
            (12, "2024-01-01"),
        ]
    assert result.metadata["statements"] == 3
    assert result.metadata["rowcounts"][1:] == [2, 1]


def test_sql_script_rollback_names_failing_statement_number(tmp_path):
    db = tmp_path / "x.db"
    ctx = make_context(tmp_path, connections={"db": f"sqlite:///{db}"})

    with pytest.raises(StepError) as failure:
        run_step(
            "sql",
            ctx,
            connection="db",
            sql="CREATE TABLE t (id INTEGER);\nINSERT INTO t VALUES (1);\n\n"
            "INSERT INTO missing VALUES (2);",
        )

    message = str(failure.value)
    assert "statement 3 of 3 (line 4: INSERT INTO missing VALUES (2);)" in message
    assert "no such table: missing" in message
    assert "\n" not in message
    with sqlite3.connect(db) as conn:  # the CREATE TABLE was rolled back too
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


@pytest.mark.postgres
def test_sql_script_on_postgres_is_one_transaction(tmp_path, pg_url, pg_dsn):
    ctx = make_context(tmp_path, connections={"dwh": pg_url})
    run_step(
        "sql",
        ctx,
        connection="dwh",
        sql="CREATE TABLE t (id int PRIMARY KEY, note text);"
        "DO $$ BEGIN INSERT INTO t VALUES (1, 'a;b'); END $$;",
    )

    with pytest.raises(StepError, match=r"statement 2 of 2 .*duplicate key"):
        run_step(
            "sql",
            ctx,
            connection="dwh",
            sql="UPDATE t SET note = :note WHERE id = 1;\nINSERT INTO t VALUES (1, 'dup');",
            params={"note": "changed"},
        )

    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT id, note FROM t").fetchall() == [(1, "a;b")]


def test_sql_missing_bind_parameter_is_named(tmp_path):
    ctx = make_context(tmp_path, connections={"db": f"sqlite:///{tmp_path / 'x.db'}"})

    with pytest.raises(StepError, match=r"statement 1 of 1.*cutoff"):
        run_step("sql", ctx, connection="db", sql="SELECT :cutoff")


def test_sql_empty_script_is_a_config_error():
    with pytest.raises(ValidationError, match="no statement"):
        make_step("sql", connection="db", sql="-- nothing here\n")


@pytest.mark.postgres
def test_cancel_interrupts_a_running_statement_and_rolls_back(tmp_path, pg_url, pg_dsn):
    ctx = make_context(tmp_path, connections={"dwh": pg_url})
    failures: list[StepError] = []

    def run() -> None:
        try:
            run_step(
                "sql", ctx, connection="dwh", sql="CREATE TABLE t (id int); SELECT pg_sleep(30);"
            )
        except StepError as exc:
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            sleeping = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
            ).fetchone()
            if sleeping and sleeping[0]:
                break
            time.sleep(0.05)
    ctx.cancel_event.set()
    ctx.run_cancel_hooks()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert "statement 2 of 2" in str(failures[0])
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
