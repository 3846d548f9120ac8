"""Every store backend (SQLite, PostgreSQL) keeps runs, tasks and attempts the same way."""

from __future__ import annotations

import pytest

from batchpilot.errors import RunNotFound, StoreError
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore


def make_run(store: RunStore, run_id: str = "r1", tasks=("a", "b")) -> None:
    store.create_run(
        run_id=run_id,
        pipeline="p",
        spec={"name": "p"},
        params={"x": 1},
        ds="2026-01-02",
        source_path=None,
        task_ids=list(tasks),
    )


def test_a_new_run_is_queued_with_pending_tasks_in_order(store: RunStore):
    make_run(store, tasks=("z", "a", "m"))
    run = store.get_run("r1")
    assert run.status is RunStatus.QUEUED
    assert run.params == {"x": 1} and run.ds == "2026-01-02"
    assert [(t.task_id, t.state) for t in store.get_tasks("r1")] == [
        ("z", TaskState.PENDING),
        ("a", TaskState.PENDING),
        ("m", TaskState.PENDING),
    ]


def test_attempts_are_kept_each_with_state_error_and_log(store: RunStore):
    make_run(store)
    store.start_attempt("r1", "a", 1, log_path="/logs/a.1")
    store.finish_attempt(
        "r1", "a", 1, state=TaskState.RETRY, attempt_state=TaskState.FAILED, error="boom"
    )
    store.start_attempt("r1", "a", 2, log_path="/logs/a.2")
    store.finish_attempt(
        "r1",
        "a",
        2,
        state=TaskState.SUCCESS,
        rows_in=5,
        rows_out=4,
        rows_rejected=1,
        duration_s=0.5,
        output={"artifact": None},
    )
    task = store.get_tasks("r1")[0]
    assert (task.state, task.attempts, task.rows_in, task.rows_out, task.rows_rejected) == (
        TaskState.SUCCESS,
        2,
        5,
        4,
        1,
    )
    assert task.error is None and task.output == {"artifact": None}
    attempts = store.get_attempts("r1", "a")
    assert [(a.attempt, a.state, a.error, a.log_path) for a in attempts] == [
        (1, TaskState.FAILED, "boom", "/logs/a.1"),
        (2, TaskState.SUCCESS, None, "/logs/a.2"),
    ]


def test_several_transitions_commit_together(store: RunStore):
    make_run(store)
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.start_attempt("r1", "a", 1, log_path="x")
        raise RuntimeError("crash between two transitions")
    assert store.get_tasks("r1")[0].state is TaskState.PENDING
    assert store.get_attempts("r1") == []


def test_a_transition_the_database_refuses_is_a_store_error_and_changes_nothing(
    store: RunStore,
):
    make_run(store)
    with store.write() as tx:
        tx.start_attempt("r1", "a", 1, log_path="x")
    with pytest.raises(StoreError, match="state store error"), store.write() as tx:
        tx.finish_attempt("r1", "a", 1, state=TaskState.FAILED, error="boom")
        tx.start_attempt("r1", "a", 1, log_path="y")  # attempt 1 exists already
    (attempt,) = store.get_attempts("r1")
    assert attempt.state is TaskState.RUNNING and attempt.log_path == "x"


def test_runs_list_newest_first_and_prefix_lookup(store: RunStore):
    make_run(store, "20260101T000000-aaaaaa")
    make_run(store, "20260102T000000-bbbbbb")
    assert [r.run_id for r in store.list_runs()] == [
        "20260102T000000-bbbbbb",
        "20260101T000000-aaaaaa",
    ]
    assert store.get_run("20260102").run_id == "20260102T000000-bbbbbb"
    with pytest.raises(RunNotFound):
        store.get_run("2026")  # ambiguous prefix
    with pytest.raises(RunNotFound, match="no run with id 'nope'"):
        store.get_run("nope")


def test_only_one_owner_can_claim_a_run(store: RunStore):
    make_run(store)
    assert store.claim_run("r1", "host:1:a", stale_after_s=60)
    assert not store.claim_run("r1", "host:2:b", stale_after_s=60)
    assert store.claim_run("r1", "host:2:b", stale_after_s=60, dead_owners=["host:1:a"])
    assert store.get_run("r1").owner == "host:2:b"
    assert not store.heartbeat("r1", "host:1:a")
    assert store.heartbeat("r1", "host:2:b")


def test_terminal_status_records_end_and_releases_owner(store: RunStore):
    make_run(store)
    store.claim_run("r1", "me", stale_after_s=60)
    store.set_run_status("r1", RunStatus.RUNNING)
    store.set_run_status("r1", RunStatus.FAILED, error="failed tasks: a", release=True)
    run = store.get_run("r1")
    assert run.status is RunStatus.FAILED and run.error == "failed tasks: a"
    assert run.started_at is not None and run.ended_at is not None and run.owner is None


def test_opening_an_existing_store_keeps_its_data(store_url: str, store: RunStore):
    make_run(store)
    again = RunStore(store_url)
    assert again.get_run("r1").pipeline == "p"
    again.dispose()


def test_schema_revision_constant_matches_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from batchpilot.store import migrate

    config = Config()
    config.set_main_option("script_location", str(migrate._MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.SCHEMA_REVISION


def test_server_sessions_an_attempt_opened_are_kept_once_each(store: RunStore):
    make_run(store)
    for _ in range(2):  # a repeat (the same backend reported twice) is ignored
        store.record_server_session(
            "r1",
            "a",
            1,
            connection="dwh",
            backend_pid=4242,
            backend_start="2026-01-02 03:04:05.123456+00",
        )
    store.record_server_session(
        "r1", "a", 2, connection="dwh", backend_pid=4343, backend_start="2026-01-02 03:05:00+00"
    )
    sessions = store.server_sessions("r1")
    assert [(s.task_id, s.attempt, s.connection, s.backend_pid) for s in sessions] == [
        ("a", 1, "dwh", 4242),
        ("a", 2, "dwh", 4343),
    ]
    assert sessions[0].backend_start == "2026-01-02 03:04:05.123456+00"
    assert store.server_sessions("no-such-run") == []
