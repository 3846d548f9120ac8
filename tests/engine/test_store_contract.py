"""Every store backend (SQLite, PostgreSQL) keeps runs, tasks and attempts the same way."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from batchpilot.errors import RunNotFound, SpecError, StoreError
from batchpilot.states import RunStatus, RunTrigger, TaskState
from batchpilot.store import RunStore
from batchpilot.store.run_rows import NewRun
from batchpilot.store.schedule_records import RunClaim, ScheduleState


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
    assert [(a.attempt, a.state, a.error, a.log_path, a.log_text) for a in attempts] == [
        (1, TaskState.FAILED, "boom", "/logs/a.1", None),
        (2, TaskState.SUCCESS, None, "/logs/a.2", None),
    ]


def test_an_attempt_without_a_log_file_gets_its_log_text_when_it_ends(store: RunStore):
    make_run(store)
    store.start_attempt("r1", "a", 1, log_path=None)
    (running,) = store.get_attempts("r1", "a")
    assert (running.log_path, running.log_text) == (None, None)
    store.finish_attempt("r1", "a", 1, state=TaskState.SUCCESS, log_text="started\nsucceeded\n")
    (ended,) = store.get_attempts("r1", "a")
    assert (ended.log_path, ended.log_text) == (None, "started\nsucceeded\n")


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


def test_a_cancel_request_is_read_without_the_rest_of_the_run(store: RunStore):
    make_run(store)
    make_run(store, run_id="r2")
    assert store.cancel_requested("r1") is False
    store.request_cancel("r1")
    assert store.cancel_requested("r1") is True
    assert store.cancel_requested("r2") is False
    assert store.cancel_requested("no-such-run") is False


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


# -- the scheduler's part: slots claimed once, schedule state, idempotency keys ----------------

PARIS = ZoneInfo("Europe/Paris")


def new_run(run_id: str, slot: datetime | None = None, *, pipeline: str = "nightly") -> NewRun:
    return NewRun(
        run_id=run_id,
        pipeline=pipeline,
        spec={"name": pipeline},
        params={},
        ds=(slot or datetime(2026, 1, 1, tzinfo=UTC)).date().isoformat(),
        source_path=None,
        task_ids=["extract", "load"],
        slot=slot,
        triggered_by=RunTrigger.SCHEDULE if slot else RunTrigger.MANUAL,
    )


def test_a_run_records_its_slot_and_what_triggered_it(store: RunStore):
    make_run(store, "plain")
    plain = store.get_run("plain")
    assert (plain.slot, plain.triggered_by) == (None, "manual")
    slot = datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)
    store.create_run(
        run_id="scheduled",
        pipeline="p",
        spec={"name": "p"},
        params={},
        ds="2026-03-29",
        source_path=None,
        task_ids=["a"],
        slot=slot,
        triggered_by=RunTrigger.BACKFILL,
    )
    run = store.get_run("scheduled")
    assert run.slot == datetime(2026, 3, 29, 1, 0, tzinfo=UTC) == slot
    assert run.triggered_by == "backfill"


def test_a_slot_is_claimed_once_and_a_second_claim_creates_nothing(store: RunStore):
    slot = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    first = store.schedules.claim_slot(new_run("r-first", slot))
    again = store.schedules.claim_slot(new_run("r-second", slot.astimezone(PARIS)))
    assert first == RunClaim("r-first", created=True)
    assert again == RunClaim("r-first", created=False)  # the same instant, written in Paris time
    assert [r.run_id for r in store.list_runs(pipeline="nightly")] == ["r-first"]
    assert [t.task_id for t in store.get_tasks("r-first")] == ["extract", "load"]
    with pytest.raises(RunNotFound):
        store.get_run("r-second")
    (claim,) = store.schedules.slot_claims("nightly")
    assert (claim.slot, claim.run_id, claim.triggered_by, claim.run_status) == (
        slot,
        "r-first",
        "schedule",
        RunStatus.QUEUED,
    )


def test_a_claim_whose_run_cannot_be_created_leaves_no_claim(store: RunStore):
    make_run(store, "taken")
    slot = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    with pytest.raises(StoreError):
        store.schedules.claim_slot(new_run("taken", slot))  # that run id exists already
    assert store.schedules.slot_claims("nightly") == []
    assert store.schedules.claim_slot(new_run("fresh", slot)) == RunClaim("fresh", created=True)


def test_claiming_a_slot_can_advance_the_schedule_and_record_missed_slots(store: RunStore):
    day = [datetime(2026, 1, d, 2, 0, tzinfo=UTC) for d in range(1, 6)]
    store.schedules.claim_slot(
        new_run("r5", day[4]), advance_schedule=True, missed=day[1:4], catchup="last"
    )
    store.schedules.claim_slot(new_run("r1", day[0]), advance_schedule=True)  # older: no move
    state = store.schedules.schedule_state("nightly")
    assert (state.last_slot, state.paused) == (day[4], False)
    (missed,) = store.schedules.missed_slots("nightly")
    assert (missed.catchup, missed.slot_count, missed.slots) == ("last", 3, tuple(day[1:4]))
    assert store.schedules.missed_slots("other") == []


def test_skipped_slots_move_the_schedule_on_without_a_run(store: RunStore):
    slots = [datetime(2026, 2, 1, h, 0, tzinfo=UTC) for h in range(3)]
    store.schedules.skip_slots("nightly", last_slot=slots[-1], missed=slots, catchup="none")
    assert store.schedules.schedule_state("nightly").last_slot == slots[-1]
    assert store.schedules.missed_slots()[0].slots == tuple(slots)
    assert store.list_runs() == []
    many = [slots[0] + timedelta(minutes=m) for m in range(1500)]
    store.schedules.record_missed_slots("nightly", many, catchup="all")
    listed = store.schedules.missed_slots("nightly")[-1]
    assert (listed.slot_count, len(listed.slots), listed.slots[0]) == (1500, 1000, many[0])


def test_pause_and_unpause_keep_the_last_slot(store: RunStore):
    assert store.schedules.schedule_state("nightly") == ScheduleState("nightly")
    slot = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    store.schedules.claim_slot(new_run("r1", slot), advance_schedule=True)
    paused = store.schedules.set_paused("nightly", True, reason="3 consecutive failures")
    assert (paused.paused, paused.paused_reason, paused.last_slot) == (
        True,
        "3 consecutive failures",
        slot,
    )
    assert paused.paused_at is not None
    resumed = store.schedules.set_paused("nightly", False)
    assert (resumed.paused, resumed.paused_reason, resumed.paused_at, resumed.last_slot) == (
        False,
        None,
        None,
        slot,
    )
    store.schedules.set_paused("hourly", True)
    assert [(s.pipeline, s.paused) for s in store.schedules.schedule_states()] == [
        ("hourly", True),
        ("nightly", False),
    ]


def test_a_rerun_replaces_a_slots_run_only_once(store: RunStore):
    slot = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    store.schedules.claim_slot(new_run("r1", slot))
    store.set_run_status("r1", RunStatus.FAILED, error="boom")
    first = store.schedules.reclaim_slot(new_run("r2", slot), replacing="r1")
    late = store.schedules.reclaim_slot(new_run("r3", slot), replacing="r1")
    assert (first, late) == (RunClaim("r2", True), RunClaim("r2", False))
    assert {r.run_id for r in store.list_runs()} == {"r1", "r2"}
    (claim,) = store.schedules.slot_claims("nightly")
    assert (claim.run_id, claim.run_status) == ("r2", RunStatus.QUEUED)


def test_slot_claims_are_listed_within_a_range(store: RunStore):
    slots = [datetime(2026, 1, d, 2, 0, tzinfo=UTC) for d in range(1, 8)]
    for index, slot in enumerate(slots):
        store.schedules.claim_slot(new_run(f"r{index}", slot))
    listed = store.schedules.slot_claims("nightly", start=slots[2], end=slots[5])
    assert [c.slot for c in listed] == slots[2:5]


def test_the_same_idempotency_key_gives_the_same_run(store: RunStore):
    first = store.schedules.create_run_once(new_run("m1"), idempotency_key="ticket-42")
    again = store.schedules.create_run_once(new_run("m2"), idempotency_key="ticket-42")
    other = store.schedules.create_run_once(
        new_run("m3", pipeline="hourly"), idempotency_key="ticket-42"
    )
    assert (first, again, other) == (
        RunClaim("m1", True),
        RunClaim("m1", False),
        RunClaim("m3", True),
    )
    assert {r.run_id for r in store.list_runs()} == {"m1", "m3"}
    for bad in ("", "k" * 201):
        with pytest.raises(SpecError, match="idempotency key has 1 to 200 characters"):
            store.schedules.create_run_once(new_run("m4"), idempotency_key=bad)


def race_two_processes(target: Callable[[str, Any, Any], None], store_url: str) -> list[Any]:
    """Run ``target(store_url, barrier, results)`` in two spawned processes that pass the
    barrier together; returns what each put on ``results`` (each must exit 0)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=target, args=(store_url, barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return outcomes


SLOTS_RACED = 60


def claim_slots_in_a_process(url: str, barrier: Any, results: Any) -> None:
    """One scheduler process: claims every slot, in order, as fast as it can."""
    store = RunStore(url, migrate=False)
    barrier.wait(timeout=120)
    outcomes = []
    for index in range(SLOTS_RACED):
        slot = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=index)
        claim = store.schedules.claim_slot(
            new_run(f"{os.getpid()}-{index}", slot), advance_schedule=True
        )
        outcomes.append((slot.isoformat(), claim.run_id, claim.created))
    results.put(outcomes)
    store.dispose()


def test_two_processes_claiming_the_same_slots_run_each_slot_once(store_url: str, store: RunStore):
    outcomes = race_two_processes(claim_slots_in_a_process, store_url)
    by_slot: dict[str, set[str]] = {}
    created = 0
    for outcome in outcomes:
        for slot, run_id, was_created in outcome:
            by_slot.setdefault(slot, set()).add(run_id)
            created += was_created
    assert len(by_slot) == SLOTS_RACED and created == SLOTS_RACED
    assert all(len(run_ids) == 1 for run_ids in by_slot.values())  # both saw the same run
    runs = store.list_runs(limit=1000)
    assert len(runs) == SLOTS_RACED
    assert sorted(r.slot.isoformat() for r in runs) == sorted(by_slot)  # type: ignore[union-attr]
    claims = store.schedules.slot_claims("nightly")
    assert {c.run_id for c in claims} == {r.run_id for r in runs}
    last = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=SLOTS_RACED - 1)
    assert store.schedules.schedule_state("nightly").last_slot == last


def test_migrating_an_older_store_marks_its_runs_manual(store_url: str, store: RunStore):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from batchpilot.store import migrate

    config = Config()
    config.set_main_option("script_location", str(migrate._MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
        conn.execute(  # a run as revision 0002 wrote it
            text(
                "INSERT INTO bp_runs (run_id, pipeline, status, spec, params, ds, created_at,"
                " needs_attention, executor, cancel_requested) VALUES ('old', 'p', 'success',"
                " '{}', '{}', '2026-01-01', :now, false, 'local', false)"
            ),
            {"now": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    store.dispose()
    upgraded = RunStore(store_url)
    run = upgraded.get_run("old")
    assert (run.slot, run.triggered_by, run.pipeline) == (None, "manual", "p")
    upgraded.dispose()


def test_moving_pipelines_out_of_the_run_rows_keeps_every_run_and_task(
    store_url: str, store: RunStore
):
    """Migration 0012 (pipelines in ``bp_run_specs``), down and up again, loses nothing:
    in SQLite, rebuilding ``bp_runs`` would have deleted every row that references it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from batchpilot.store import migrate

    make_run(store, "kept", tasks=("extract", "load"))
    store.set_task_states("kept", ["extract"], TaskState.SKIPPED)
    config = Config()
    config.set_main_option("script_location", str(migrate._MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0011")
        spec = conn.execute(text("SELECT spec FROM bp_runs WHERE run_id = 'kept'")).scalar_one()
        assert (json.loads(spec) if isinstance(spec, str) else spec) == {"name": "p"}
    store.dispose()
    upgraded = RunStore(store_url)
    assert upgraded.get_run("kept").spec == {"name": "p"}
    assert [(t.task_id, t.state) for t in upgraded.get_tasks("kept")] == [
        ("extract", TaskState.SKIPPED),
        ("load", TaskState.PENDING),
    ]
    upgraded.dispose()


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


# -- the notification outbox -----------------------------------------------------------------

import threading  # noqa: E402

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


# -- triggers: each file / upstream run fires once, with its run -------------------------------

FILE_TRIGGER = "file:/data/in/users_*.xlsx"


def fire_file(store: RunStore, run_id: str, *files: tuple[str, int, int]) -> RunClaim | None:
    from batchpilot.store.triggers import file_identity

    identities = [file_identity(*f) for f in files]

    def make(fresh: list[Any]) -> NewRun:
        run = new_run(run_id, pipeline="loader")
        return NewRun(**{**run.__dict__, "params": {"paths": [i.detail for i in fresh]}})

    return store.triggers.fire("loader", FILE_TRIGGER, identities, run_id=run_id, make_run=make)


def test_a_file_fires_once_and_a_second_claim_creates_no_run(store: RunStore):
    first = fire_file(store, "t1", ("/data/in/users_1.xlsx", 10, 111))
    again = fire_file(store, "t2", ("/data/in/users_1.xlsx", 10, 111))
    assert first == RunClaim("t1", created=True) and again is None
    assert [r.run_id for r in store.list_runs()] == ["t1"]
    (fire,) = store.triggers.fires("loader")
    assert (fire.detail, fire.run_id, fire.trigger_key) == (
        "/data/in/users_1.xlsx",
        "t1",
        FILE_TRIGGER,
    )
    assert store.triggers.fired_keys("loader", FILE_TRIGGER) == {fire.fire_key}
    assert store.triggers.fired_keys("loader", "file:/other/*") == set()


def test_a_rewritten_file_is_a_new_file_and_a_batch_takes_only_the_unfired_ones(store: RunStore):
    fire_file(store, "t1", ("/data/in/users_1.xlsx", 10, 111))
    claim = fire_file(
        store,
        "t2",
        ("/data/in/users_1.xlsx", 10, 111),
        ("/data/in/users_1.xlsx", 12, 222),
        ("/data/in/users_2.xlsx", 5, 333),
    )
    assert claim == RunClaim("t2", created=True)
    assert store.get_run("t2").params == {
        "paths": ["/data/in/users_1.xlsx", "/data/in/users_2.xlsx"]
    }
    assert len(store.triggers.fires("loader")) == 3


def test_a_fire_whose_run_cannot_be_created_leaves_no_fire_record(store: RunStore):
    make_run(store, "taken")
    with pytest.raises(StoreError):
        fire_file(store, "taken", ("/data/in/users_1.xlsx", 10, 111))
    assert store.triggers.fires() == []
    assert fire_file(store, "t1", ("/data/in/users_1.xlsx", 10, 111)) is not None


def test_a_trigger_is_armed_once_and_upstream_runs_ended_since_are_listed(store: RunStore):
    armed = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert store.triggers.arm("report", "after:loader:success", armed) == armed
    later = armed + timedelta(hours=1)
    assert store.triggers.arm("report", "after:loader:success", later) == armed
    for run_id, status in (("u1", RunStatus.SUCCESS), ("u2", RunStatus.FAILED), ("u3", None)):
        store.create_run(
            run_id=run_id,
            pipeline="loader",
            spec={},
            params={},
            ds="2026-01-01",
            source_path=None,
            task_ids=["a"],
        )
        if status is not None:
            store.set_run_status(run_id, RunStatus.RUNNING)
            store.set_run_status(run_id, status)
    ended = store.triggers.runs_ended_since("loader", armed)
    assert [r.run_id for r in ended] == ["u1", "u2"]  # ended now (after 2026-01-01), u3 runs
    assert store.triggers.runs_ended_since("loader", datetime(2999, 1, 1, tzinfo=UTC)) == []
    assert store.triggers.runs_ended_since("other", armed) == []


FILES_RACED = 40


def fire_files_in_a_process(url: str, barrier: Any, results: Any) -> None:
    """One serve process: fires every file, in order, as fast as it can."""
    store = RunStore(url, migrate=False)
    barrier.wait(timeout=120)
    created = []
    for index in range(FILES_RACED):
        claim = fire_file(store, f"{os.getpid()}-{index}", (f"/data/in/users_{index}.xlsx", 1, 1))
        if claim is not None:
            created.append(claim.run_id)
    results.put(created)
    store.dispose()


def test_two_processes_firing_the_same_files_start_one_run_per_file(
    store_url: str, store: RunStore
):
    created = race_two_processes(fire_files_in_a_process, store_url)
    assert len(created[0]) + len(created[1]) == FILES_RACED
    runs = store.list_runs(limit=1000)
    assert sorted(r.run_id for r in runs) == sorted(created[0] + created[1])
    fires = store.triggers.fires("loader")
    assert len(fires) == FILES_RACED
    assert {f.run_id for f in fires} == {r.run_id for r in runs}
