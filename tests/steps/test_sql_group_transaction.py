"""The sql step's side of atomic groups: it opens the group's transaction, its members
work in savepoints inside it, and the commit records the group in the same transaction."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import psycopg
import pytest

from batchpilot.connections import Connection
from batchpilot.errors import StepError
from batchpilot.steps.registry import BUILTIN_STEPS, default_registry
from batchpilot.steps.sql import SqlStep
from batchpilot.steps.transaction_group import (
    GroupKey,
    GroupTransaction,
    TransactionGroupStep,
    joins_transaction_groups,
)

from .helpers import make_context, run_step

KEY = GroupKey(pipeline="books", run_id="run-1", group="ledger")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target.db'}"
    return request.getfixturevalue("pg_url")


def outside_view(url: str, sql: str) -> list[tuple] | None:
    """What another connection sees: the query's rows, or None if the table is missing."""
    try:
        if url.startswith("sqlite"):
            with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as conn:
                return conn.execute(sql).fetchall()
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            return conn.execute(sql).fetchall()
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return None


def member(tmp_path: Path, url: str, transaction: object, sql: str, task_id: str):
    """Run a sql member of the group inside ``transaction``."""
    ctx = make_context(tmp_path, connections={"db": url}, task_id=task_id)
    ctx = dataclasses.replace(ctx, transaction=transaction)
    return run_step("sql", ctx, connection="db", sql=sql)


def test_the_sql_step_joins_transaction_groups_and_no_other_built_in_step_does():
    assert isinstance(SqlStep, TransactionGroupStep)
    registry = default_registry()
    joining = {name for name in BUILTIN_STEPS if joins_transaction_groups(registry.get(name))}
    assert joining == {"sql"}


def test_members_work_in_savepoints_and_only_the_commit_makes_their_work_visible(
    tmp_path: Path, db_url: str
):
    group = SqlStep.open_group_transaction(Connection("db", db_url), KEY, "first:1")
    assert isinstance(group, GroupTransaction)

    member(tmp_path, db_url, group, "CREATE TABLE ledger (id INT PRIMARY KEY)", "first")
    member(tmp_path, db_url, group, "INSERT INTO ledger VALUES (1)", "second")
    with pytest.raises(StepError, match="its savepoint was rolled back"):
        member(
            tmp_path,
            db_url,
            group,
            "INSERT INTO ledger VALUES (2); INSERT INTO x VALUES (1)",
            "third",
        )
    member(tmp_path, db_url, group, "INSERT INTO ledger VALUES (3)", "third")
    assert outside_view(db_url, "SELECT id FROM ledger") is None  # nothing before the commit
    assert SqlStep.committed_group_token(Connection("db", db_url), KEY) is None

    group.commit()

    assert outside_view(db_url, "SELECT id FROM ledger ORDER BY id") == [(1,), (3,)]
    assert SqlStep.committed_group_token(Connection("db", db_url), KEY) == "first:1"
    assert outside_view(
        db_url, "SELECT pipeline, run_id, group_name, token FROM batchpilot_transactions"
    ) == [("books", "run-1", "ledger", "first:1")]


def test_a_rolled_back_group_leaves_nothing_and_no_commit_record(tmp_path: Path, db_url: str):
    group = SqlStep.open_group_transaction(Connection("db", db_url), KEY, "first:1")
    member(
        tmp_path,
        db_url,
        group,
        "CREATE TABLE ledger (id INT); INSERT INTO ledger VALUES (1)",
        "first",
    )

    group.rollback()

    assert outside_view(db_url, "SELECT id FROM ledger") is None
    assert SqlStep.committed_group_token(Connection("db", db_url), KEY) is None


def test_a_later_opening_that_commits_replaces_the_recorded_token(db_url: str):
    connection = Connection("db", db_url)
    SqlStep.open_group_transaction(connection, KEY, "first:1").commit()
    SqlStep.open_group_transaction(connection, KEY, "first:2").commit()
    other_run = dataclasses.replace(KEY, run_id="run-2")
    SqlStep.open_group_transaction(connection, other_run, "first:1").rollback()

    assert SqlStep.committed_group_token(connection, KEY) == "first:2"
    assert SqlStep.committed_group_token(connection, other_run) is None
    assert outside_view(db_url, "SELECT count(*) FROM batchpilot_transactions") == [(1,)]


def test_an_unreachable_database_fails_the_opening_naming_group_and_connection():
    unreachable = Connection("dwh", "postgresql+psycopg://loader:s3cret@127.0.0.1:9/dwh")

    with pytest.raises(StepError) as failure:
        SqlStep.open_group_transaction(unreachable, KEY, "first:1")

    message = str(failure.value)
    assert message.startswith("cannot open transaction group 'ledger' on 'dwh': ")
    assert "s3cret" not in message
    assert "\n" not in message


class ForeignTransaction:
    """A group transaction another step type could have opened."""

    def commit(self) -> None:
        """Nothing to commit."""

    def rollback(self) -> None:
        """Nothing to undo."""


def test_a_sql_member_refuses_a_transaction_another_step_type_opened(tmp_path: Path):
    foreign = ForeignTransaction()
    assert isinstance(foreign, GroupTransaction)

    with pytest.raises(StepError, match="put only steps of one type in a group"):
        member(tmp_path, f"sqlite:///{tmp_path / 't.db'}", foreign, "SELECT 1", "first")
