"""Replacing a table with zero rows needs ``allow_empty: true`` (load.postgres, load.sql)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from batchpilot.errors import PermanentStepError

from .helpers import make_context, run_step

PEOPLE = pa.table({"id": [1, 2], "name": ["ann", "bob"]})
NOBODY = pa.table({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())})


@pytest.fixture(params=["load.postgres", "load.sql on postgres", "load.sql on sqlite"])
def target(request, tmp_path: Path) -> tuple[str, str]:
    """(step type, connection URL) of a target database holding table people(ann, bob)."""
    if request.param == "load.sql on sqlite":
        url = f"sqlite:///{tmp_path / 'target.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    step_type = request.param.split()[0]
    load(tmp_path, step_type, url, PEOPLE, run_id="run-0", key=["id"])
    return step_type, url


def load(tmp_path: Path, step_type: str, url: str, data: pa.Table, run_id: str, **config):
    ctx = make_context(tmp_path / run_id, {"up": data}, {"dwh": url}, run_id=run_id, task_id="load")
    return run_step(step_type, ctx, connection="dwh", table="people", **config)


def people(url: str) -> list[tuple]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
    from batchpilot.connections import Connection

    with psycopg.connect(Connection("dwh", url).libpq_dsn()) as conn:
        return conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()


def test_replace_with_zero_rows_fails_and_leaves_the_table_as_it_was(tmp_path, target):
    step_type, url = target
    with pytest.raises(PermanentStepError) as caught:
        load(tmp_path, step_type, url, NOBODY, run_id="run-1", mode="replace")
    assert str(caught.value) == (
        "task load: the input has 0 rows, so mode 'replace' would empty table people; it was "
        "left as it was. Set 'allow_empty: true' on this load if an empty table is what you want"
    )
    assert people(url) == [(1, "ann"), (2, "bob")]
    # nothing was recorded either: the same task loads once its input has rows
    load(tmp_path, step_type, url, PEOPLE.slice(1), run_id="run-1", mode="replace")
    assert people(url) == [(2, "bob")]


def test_replace_with_zero_rows_and_allow_empty_empties_the_table(tmp_path, target):
    step_type, url = target
    result = load(
        tmp_path, step_type, url, NOBODY, run_id="run-1", mode="replace", allow_empty=True
    )
    assert result.rows_out == 0
    assert people(url) == []


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_appending_or_upserting_zero_rows_needs_no_option(tmp_path, target, mode):
    step_type, url = target
    load(tmp_path, step_type, url, NOBODY, run_id="run-1", mode=mode, key=["id"])
    assert people(url) == [(1, "ann"), (2, "bob")]
