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


# -- the notification outbox -----------------------------------------------------------------

import threading  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from batchpilot.store.outbox import OutboxState  # noqa: E402

OUTBOX_T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


def _seconds(s: float) -> datetime:
    return OUTBOX_T0 + timedelta(seconds=s)


def test_outbox_enqueue_is_idempotent_per_channel_and_key(store: RunStore):
    assert store.enqueue_notification(
        channel="oncall", idempotency_key="k1", message={"title": "a"}, now=OUTBOX_T0
    )
    assert not store.enqueue_notification(
        channel="oncall", idempotency_key="k1", message={"title": "changed"}, now=_seconds(5)
    )
    assert store.enqueue_notification(
        channel="data", idempotency_key="k1", message={"title": "a"}, now=OUTBOX_T0
    )
    record = store.get_notification("oncall", "k1")
    assert record is not None and record.message == {"title": "a"}
    assert record.created_at == OUTBOX_T0 and record.attempts == 0
    assert store.outbox_backlog() == 2 and store.outbox_backlog(channel="oncall") == 1


def test_outbox_a_claimed_message_is_held_until_its_lease_expires(store: RunStore):
    store.enqueue_notification(channel="c", idempotency_key="k", message={}, now=OUTBOX_T0)
    (claimed,) = store.claim_notifications(owner="a", now=OUTBOX_T0, lease_s=60)
    assert claimed.lease_owner == "a" and claimed.lease_expires_at == _seconds(60)
    assert store.claim_notifications(owner="b", now=_seconds(59), lease_s=60) == []
    (again,) = store.claim_notifications(owner="b", now=_seconds(60), lease_s=60)
    # the first owner's result no longer counts; the new owner settles it
    assert store.mark_notifications_delivered([again.outbox_id], owner="a", now=_seconds(61)) == 0
    assert store.mark_notifications_delivered([again.outbox_id], owner="b", now=_seconds(61)) == 1
    record = store.get_notification("c", "k")
    assert record is not None and record.state is OutboxState.DELIVERED
    assert (record.attempts, record.delivered_at, record.lease_owner) == (1, _seconds(61), None)
    assert store.claim_notifications(owner="c", now=_seconds(999), lease_s=60) == []


def test_outbox_claims_only_due_messages_oldest_first_up_to_the_limit(store: RunStore):
    for i in range(5):
        store.enqueue_notification(
            channel="c", idempotency_key=f"k{i}", message={}, now=_seconds(10 - i)
        )
    claimed = store.claim_notifications(owner="a", now=_seconds(8), lease_s=60, limit=2)
    assert [r.idempotency_key for r in claimed] == ["k4", "k3"]
    rest = store.claim_notifications(owner="b", now=_seconds(50), lease_s=60)
    assert [r.idempotency_key for r in rest] == ["k2", "k1", "k0"]


def test_outbox_a_failure_is_due_again_at_retry_at_then_dead_with_its_last_error(store: RunStore):
    store.enqueue_notification(channel="c", idempotency_key="k", message={}, now=OUTBOX_T0)
    (first,) = store.claim_notifications(owner="a", now=OUTBOX_T0, lease_s=60)
    assert store.mark_notification_failed(
        first.outbox_id, owner="a", error="HTTP 503", retry_at=_seconds(30)
    )
    assert store.claim_notifications(owner="b", now=_seconds(29), lease_s=60) == []
    (second,) = store.claim_notifications(owner="b", now=_seconds(30), lease_s=60)
    assert (second.attempts, second.last_error) == (1, "HTTP 503")
    assert store.mark_notification_failed(
        second.outbox_id, owner="b", error="HTTP 404", retry_at=None
    )
    record = store.get_notification("c", "k")
    assert record is not None
    assert (record.state, record.attempts, record.last_error) == (OutboxState.DEAD, 2, "HTTP 404")
    assert store.outbox_backlog() == 0
    assert store.outbox_counts() == {
        OutboxState.PENDING: 0,
        OutboxState.DELIVERED: 0,
        OutboxState.DEAD: 1,
    }
    assert store.claim_notifications(owner="c", now=_seconds(10**6), lease_s=60) == []


def test_outbox_released_messages_come_back_without_counting_an_attempt(store: RunStore):
    for key in ("k1", "k2"):
        store.enqueue_notification(channel="c", idempotency_key=key, message={}, now=OUTBOX_T0)
    claimed = store.claim_notifications(owner="a", now=OUTBOX_T0, lease_s=60)
    ids = [r.outbox_id for r in claimed]
    assert store.release_notifications(ids, owner="a", retry_at=_seconds(45), note="down") == 2
    again = store.claim_notifications(owner="b", now=_seconds(45), lease_s=60)
    assert [(r.attempts, r.last_error) for r in again] == [(0, "down"), (0, "down")]


def test_outbox_two_deliverers_claiming_at_once_never_share_a_message(store_url: str):
    stores = [RunStore(store_url) for _ in range(2)]
    total = 300
    for i in range(total):
        stores[0].enqueue_notification(
            channel="c", idempotency_key=f"k{i}", message={}, now=OUTBOX_T0
        )
    claims: list[list[int]] = [[], []]

    def drain(index: int) -> None:
        while batch := stores[index].claim_notifications(
            owner=f"w{index}", now=OUTBOX_T0, lease_s=600, limit=7
        ):
            claims[index].extend(r.outbox_id for r in batch)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(claims[0]) & set(claims[1])
    assert len(claims[0]) + len(claims[1]) == total
    for s in stores:
        s.dispose()


def test_outbox_a_message_queued_in_a_transaction_that_rolls_back_is_not_queued(store: RunStore):
    from batchpilot.store.outbox import insert_notification

    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        insert_notification(conn, channel="c", idempotency_key="k", message={}, now=OUTBOX_T0)
        raise RuntimeError("the decision to alert failed to commit")
    assert store.outbox_backlog() == 0
    with store.engine.begin() as conn:
        assert insert_notification(
            conn, channel="c", idempotency_key="k", message={}, now=OUTBOX_T0
        )
    assert store.outbox_backlog() == 1


def test_outbox_one_message_for_several_channels_is_queued_once_per_channel(store: RunStore):
    queued = store.enqueue_notifications(
        ["oncall", "data"], idempotency_key="k", message={"title": "a"}, now=OUTBOX_T0
    )
    assert queued == ["oncall", "data"]
    again = store.enqueue_notifications(
        ["data", "ops"], idempotency_key="k", message={"title": "a"}, now=OUTBOX_T0
    )
    assert again == ["ops"]
    assert sorted(r.channel for r in store.list_notifications()) == ["data", "oncall", "ops"]
