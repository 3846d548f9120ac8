"""Failure handling: saga compensation, callbacks, cancel, timeouts, retry of a finished run."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import threading
import time

import pyarrow as pa
import pytest

from batchpilot import Pipeline, RunStatus, Task, TaskState
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.control import cancel_run, compensate_run, reap_runs
from batchpilot.engine.runner import CANCEL_POLL_S
from batchpilot.engine.runs import retry_run
from batchpilot.errors import RunStateError
from batchpilot.settings import Settings
from batchpilot.store import RunStore


def fail(message: str = "debit refused"):
    def step() -> None:
        raise RuntimeError(message)

    return step


class Ledger:
    """Records what steps and their compensations did, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def doing(self, name: str, value: object = None):
        def step():
            self.add(f"do {name}")
            return {"did": name} if value is None else value

        return step

    def undoing(self, name: str):
        def undo(original, metadata, run_id):
            assert original["task_id"] == name and run_id
            self.add(f"undo {name} {metadata.get('did', '')}".strip())

        return undo


def test_a_failed_run_compensates_succeeded_tasks_latest_first(settings: Settings):
    ledger = Ledger()
    pipeline = Pipeline("order_saga")
    create = Task(
        "create_order", run=ledger.doing("create_order"), compensate=ledger.undoing("create_order")
    )
    reserve = Task(
        "reserve_stock",
        run=ledger.doing("reserve_stock"),
        compensate=ledger.undoing("reserve_stock"),
    ).depends_on(create)
    notify = Task("notify", run=ledger.doing("notify")).depends_on(create)  # nothing to undo
    debit = Task("debit_account", run=fail(), compensate=ledger.undoing("debit_account"))
    debit.depends_on(reserve, notify)
    pipeline.add_tasks([create, reserve, notify, debit])

    result = pipeline.run(settings=settings, workers=1)

    assert result.status is RunStatus.FAILED
    assert ledger.events[-2:] == [
        "undo reserve_stock reserve_stock",
        "undo create_order create_order",
    ]
    assert "undo debit_account" not in " ".join(ledger.events)  # it never succeeded
    states = {k: v.state for k, v in result.tasks.items()}
    assert states == {
        "create_order": TaskState.COMPENSATED,
        "reserve_stock": TaskState.COMPENSATED,
        "notify": TaskState.SUCCESS,
        "debit_account": TaskState.FAILED,
    }
    assert not result.needs_attention
    store = RunStore.for_home(settings.home, settings.database_url)
    comp = [
        a for a in store.get_attempts(result.run_id, "reserve_stock") if a.kind == "compensation"
    ]
    assert [a.state for a in comp] == [TaskState.COMPENSATED]


def test_manual_compensation_waits_for_the_compensate_command(settings: Settings):
    ledger = Ledger()
    pipeline = Pipeline("manual", compensation="manual")
    pipeline.add_tasks(
        [
            Task("load", run=ledger.doing("load"), compensate=ledger.undoing("load")),
            Task("check", run=fail("bad totals")).depends_on("load"),
        ]
    )
    result = pipeline.run(settings=settings)
    assert result.tasks["load"].state is TaskState.SUCCESS
    assert ledger.events == ["do load"]

    store = RunStore.for_home(settings.home, settings.database_url)
    compensated = compensate_run(
        result.run_id, settings=settings, store=store, spec=pipeline.to_spec()
    )
    assert compensated.tasks["load"].state is TaskState.COMPENSATED
    assert ledger.events == ["do load", "undo load load"]
    with pytest.raises(RunStateError, match="no succeeded task to compensate"):
        compensate_run(result.run_id, settings=settings, store=store, spec=pipeline.to_spec())


def test_a_compensation_is_retried_until_it_succeeds(settings: Settings):
    calls = []

    def flaky_undo() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("warehouse unreachable")

    undo = Task("undo", run=flaky_undo, retries=2, retry_delay=0)
    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [
            Task("load", run=lambda: None, compensate=undo),
            Task("after", run=fail()).depends_on("load"),
        ]
    )
    result = pipeline.run(settings=settings)
    assert len(calls) == 3
    assert result.tasks["load"].state is TaskState.COMPENSATED
    store = RunStore.for_home(settings.home, settings.database_url)
    comp = [a for a in store.get_attempts(result.run_id, "load") if a.kind == "compensation"]
    assert [a.state for a in comp] == [
        TaskState.COMPENSATION_FAILED,
        TaskState.COMPENSATION_FAILED,
        TaskState.COMPENSATED,
    ]


def test_a_compensation_that_always_fails_flags_the_run(settings: Settings):
    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [
            Task("load", run=lambda: None, compensate=fail("cannot delete")),
            Task("after", run=fail()).depends_on("load"),
        ]
    )
    result = pipeline.run(settings=settings)
    assert result.status is RunStatus.FAILED
    assert result.needs_attention
    assert result.tasks["load"].state is TaskState.COMPENSATION_FAILED
    assert result.tasks["load"].error == "compensation failed: RuntimeError: cannot delete"
    listed = RunStore.for_home(settings.home, settings.database_url).list_runs()[0]
    assert listed.needs_attention


def test_callbacks_fire_once_per_event_with_their_context(settings: Settings):
    fired: list[tuple] = []

    def record(event, task_id, attempt, error, log_path, run_id):
        fired.append((event["event"], task_id, attempt, error, bool(log_path), run_id))

    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")

    pipeline = Pipeline("p", on_run_failure=record, on_run_success=record)
    pipeline.add_tasks(
        [
            Task(
                "flaky",
                run=flaky,
                retries=1,
                retry_delay=0,
                on_retry=record,
                on_success=record,
                on_failure=record,
            ),
            Task("bad", run=fail("boom"), on_failure=[record, record]).depends_on("flaky"),
        ]
    )
    result = pipeline.run(settings=settings)
    run_id = result.run_id
    assert sorted(fired, key=str) == sorted(
        [
            ("on_retry", "flaky", 1, "RuntimeError: first try fails", True, run_id),
            ("on_success", "flaky", 2, None, True, run_id),
            ("on_failure", "bad", 1, "RuntimeError: boom", True, run_id),
            ("on_failure", "bad", 1, "RuntimeError: boom", True, run_id),
            ("on_run_failure", None, 1, "failed tasks: bad", False, run_id),
        ],
        key=str,
    )
    callbacks = RunStore.for_home(settings.home, settings.database_url).get_callbacks(run_id)
    assert len(callbacks) == 5 and {c.state for c in callbacks} == {"done"}


def test_cancel_stops_running_tasks_and_cancels_pending_ones(settings: Settings):
    started = threading.Event()

    def busy_loop() -> None:
        started.set()
        while True:  # no cooperative check: the engine must stop it anyway
            sum(range(1000))

    pipeline = Pipeline("p")
    pipeline.add_tasks([Task("busy", run=busy_loop), Task("later").depends_on("busy")])
    results = {}
    runner = threading.Thread(
        target=lambda: results.setdefault("r", pipeline.run(settings=settings))
    )
    runner.start()
    assert started.wait(10)
    store = RunStore.for_home(settings.home, settings.database_url)
    run_id = store.list_runs()[0].run_id
    cancelled = cancel_run(run_id, settings=settings, store=store)
    runner.join(120)  # the loop never ends by itself: the run ending proves it was stopped
    assert not runner.is_alive()
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.tasks["busy"].state is TaskState.CANCELLED
    assert cancelled.tasks["later"].state is TaskState.CANCELLED
    with pytest.raises(RunStateError, match="only a queued or running run can be cancelled"):
        cancel_run(run_id, settings=settings, store=store)


def test_a_retried_cancelled_run_is_not_cancelled_again_by_the_old_request(settings: Settings):
    started = threading.Event()
    attempts = []

    def busy_then_slow() -> None:
        attempts.append(1)
        started.set()
        if len(attempts) == 1:
            while True:  # stopped only by the cancel
                sum(range(1000))
        time.sleep(3 * CANCEL_POLL_S)  # outlives several cancel polls of the retried run

    pipeline = Pipeline("p")
    pipeline.add_task(Task("work", run=busy_then_slow))
    runner = threading.Thread(target=lambda: pipeline.run(settings=settings))
    runner.start()
    assert started.wait(10)
    store = RunStore.for_home(settings.home, settings.database_url)
    run_id = store.list_runs()[0].run_id
    assert cancel_run(run_id, settings=settings, store=store).status is RunStatus.CANCELLED
    runner.join(120)

    again = retry_run(run_id, settings=settings, store=store, spec=pipeline.to_spec())

    assert again.status is RunStatus.SUCCESS, again.tasks["work"].error
    assert again.tasks["work"].attempts == 2


def test_a_timeout_stops_a_python_loop_and_follows_the_retry_policy(settings: Settings):
    calls = []

    def spin() -> None:
        calls.append(1)
        if len(calls) == 1:
            while True:
                sum(range(1000))

    pipeline = Pipeline("p")
    pipeline.add_task(Task("spin", run=spin, timeout=0.5, retries=1, retry_delay=0))
    result = pipeline.run(settings=settings)  # the first attempt's loop never ends by itself
    assert result.status is RunStatus.SUCCESS and result.tasks["spin"].attempts == 2
    store = RunStore.for_home(settings.home, settings.database_url)
    attempts = store.get_attempts(result.run_id, "spin")
    assert attempts[0].error == "timed out after 0.5s"


def test_retry_reruns_a_task_and_its_downstream_in_the_same_run(settings: Settings):
    counts = {"a": 0, "b": 0, "c": 0}

    def count(name):
        def step():
            counts[name] += 1

        return step

    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [
            Task("a", run=count("a")),
            Task("b", run=count("b")).depends_on("a"),
            Task("c", run=count("c")).depends_on("b"),
        ]
    )
    first = pipeline.run(settings=settings)
    store = RunStore.for_home(settings.home, settings.database_url)
    again = retry_run(
        first.run_id,
        settings=settings,
        store=store,
        task_id="b",
        downstream=True,
        spec=pipeline.to_spec(),
    )
    assert again.status is RunStatus.SUCCESS
    assert counts == {"a": 1, "b": 2, "c": 2}
    assert again.tasks["b"].attempts == 2
    assert len(store.get_attempts(first.run_id, "b")) == 2  # both attempts' logs are kept
    only_b = retry_run(
        first.run_id, settings=settings, store=store, task_id="b", spec=pipeline.to_spec()
    )
    assert only_b.tasks["c"].attempts == 2 and counts["b"] == 3
    with pytest.raises(RunStateError, match="no failed task to retry"):
        retry_run(first.run_id, settings=settings, store=store, spec=pipeline.to_spec())


RUN_ENDS: list[str] = []


def record_run_end(event) -> None:
    """A run callback importable from the stored spec, as ``runs reap`` needs."""
    RUN_ENDS.append(event["state"])


def _die_after_the_run_ended(settings: Settings, run_id: str) -> RunStore:
    """Leave a run as a process killed between the run's end and its callbacks would:
    the run ended, its callbacks still queued, its owner a pid that no longer exists."""
    store = RunStore.for_home(settings.home, settings.database_url)
    for callback in store.get_callbacks(run_id):
        store.mark_callback(run_id, callback.callback_id, state="pending")
    dead = f"{socket.gethostname()}:{2**22 + 1}:dead"
    assert store.claim_run(run_id, dead, stale_after_s=60)
    return store


def test_resume_fires_the_callbacks_an_ended_run_left_unfired(settings: Settings):
    fired: list[str] = []
    pipeline = Pipeline("p", on_run_success=lambda event: fired.append(event["callback_id"]))
    pipeline.add_tasks([Task("a", run=lambda: None)])
    run_id = pipeline.run(settings=settings).run_id
    store = _die_after_the_run_ended(settings, run_id)

    result = pipeline.resume(run_id, settings=settings)

    assert result.status is RunStatus.SUCCESS
    assert fired == ["run:on_run_success:1:0", "run:on_run_success:1:0"]
    assert {c.state for c in store.get_callbacks(run_id)} == {"done"}
    assert store.get_run(run_id).owner is None
    with pytest.raises(RunStateError, match="already succeeded"):
        pipeline.resume(run_id, settings=settings)
    assert len(fired) == 2


def test_reap_fires_the_callbacks_an_ended_run_left_unfired(settings: Settings):
    RUN_ENDS.clear()
    pipeline = Pipeline("p", on_run_failure=record_run_end)
    pipeline.add_tasks([Task("bad", run=fail())])
    run_id = pipeline.run(settings=settings).run_id
    store = _die_after_the_run_ended(settings, run_id)

    reaped = reap_runs(settings=settings, store=store)

    assert [(r.run_id, r.status, r.closed_tasks, r.callbacks_fired) for r in reaped] == [
        (run_id, RunStatus.FAILED, [], 1)
    ]
    assert RUN_ENDS == ["failed", "failed"]
    assert reap_runs(settings=settings, store=store) == []


def _rows() -> pa.Table:
    return pa.table({"id": [1, 2, 3]})


def test_retry_of_a_succeeded_load_loads_again_but_a_resume_never_does(
    settings: Settings, tmp_path
):
    target = tmp_path / "target.db"
    settings = dataclasses.replace(
        settings, connections=ConnectionRegistry([Connection("target", f"sqlite:///{target}")])
    )
    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [
            Task("extract", run=_rows),
            Task(
                "load", type="load.sql", config={"connection": "target", "table": "facts"}
            ).depends_on("extract"),
        ]
    )
    first = pipeline.run(settings=settings)
    store = RunStore.for_home(settings.home, settings.database_url)

    def loaded() -> list[tuple]:
        with sqlite3.connect(target) as db:
            return db.execute(
                "SELECT task_id, rows FROM batchpilot_loads ORDER BY task_id"
            ).fetchall()

    # an explicit retry of the succeeded load (e.g. after fixing its input) is a new load
    again = retry_run(
        first.run_id,
        settings=settings,
        store=store,
        task_id="extract",
        downstream=True,
        spec=pipeline.to_spec(),
    )
    assert again.status is RunStatus.SUCCESS and again.tasks["load"].attempts == 2
    assert loaded() == [("load", 3), ("load#2", 3)]
    # as if the process had died after the second load committed, before recording it
    with store.write() as tx:
        tx.finish_attempt(first.run_id, "load", 2, state=TaskState.FAILED, error="killed")
        tx.set_run_status(first.run_id, RunStatus.FAILED)
    resumed = pipeline.resume(first.run_id, settings=settings)
    assert resumed.status is RunStatus.SUCCESS
    assert loaded() == [("load", 3), ("load#2", 3)]
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT count(*) FROM facts").fetchone() == (6,)
