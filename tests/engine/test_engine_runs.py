"""The embedded engine runs Python-defined pipelines: order, parallelism, retries,
trigger rules, data between tasks, logs, and resume."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from batchpilot import PermanentStepError, Pipeline, RunStatus, Task, TaskState
from batchpilot.engine.results import RunResult
from batchpilot.errors import RunStateError, RunTakenOver, SpecErrors
from batchpilot.settings import Settings
from batchpilot.store import RunStore
from tests.engine.concurrency import PeakConcurrency


def test_tasks_run_after_their_upstream_and_results_are_readable(settings: Settings):
    order: list[str] = []
    pipeline = Pipeline("daily_etl")
    extract = Task("extract", run=lambda: order.append("extract"))
    transform = Task("transform", run=lambda: order.append("transform"))
    transform.depends_on(extract)
    done = Task("done").depends_on(transform)
    pipeline.add_tasks([done, transform, extract])
    result = pipeline.run(settings=settings)
    assert result.status is RunStatus.SUCCESS
    assert order == ["extract", "transform"]
    assert result.tasks["transform"].state is TaskState.SUCCESS
    assert result.tasks["transform"].attempts == 1
    assert result.tasks["done"].state is TaskState.SUCCESS


def test_independent_tasks_run_in_parallel_up_to_the_worker_count(settings: Settings):
    probe = PeakConcurrency(hold_s=0.2)
    pipeline = Pipeline("fan")
    pipeline.add_tasks([Task(f"t{i}", run=probe.work) for i in range(6)])
    result = pipeline.run(settings=settings, workers=3)
    assert result.status is RunStatus.SUCCESS
    assert probe.peak == 3


def test_a_flaky_task_is_retried_and_every_attempt_keeps_its_log(settings: Settings):
    calls = []

    def flaky() -> None:
        calls.append(1)
        print(f"attempt number {len(calls)}")
        if len(calls) < 3:
            raise ConnectionResetError("server closed the connection")

    pipeline = Pipeline("p")
    pipeline.add_task(Task("flaky", run=flaky, retries=3, retry_delay=0.01))
    result = pipeline.run(settings=settings)
    assert result.status is RunStatus.SUCCESS
    assert result.tasks["flaky"].attempts == 3
    store = RunStore.for_home(settings.home, settings.database_url)
    attempts = store.get_attempts(result.run_id, "flaky")
    assert [a.state for a in attempts] == [TaskState.FAILED, TaskState.FAILED, TaskState.SUCCESS]
    first_log = Path(attempts[0].log_path).read_text()
    assert "attempt number 1" in first_log
    assert "ConnectionResetError: server closed the connection" in first_log
    assert "Traceback" in first_log
    assert "attempt number 3" in Path(attempts[2].log_path).read_text()


def test_retries_exhausted_fail_the_task_with_a_one_line_reason(settings: Settings):
    def broken() -> None:
        raise ValueError("line one\nline two")

    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [Task("broken", run=broken, retries=1, retry_delay=0), Task("after").depends_on("broken")]
    )
    result = pipeline.run(settings=settings)
    assert result.status is RunStatus.FAILED
    assert result.tasks["broken"].state is TaskState.FAILED
    assert result.tasks["broken"].attempts == 2
    assert result.tasks["broken"].error == "ValueError: line one"
    assert result.tasks["after"].state is TaskState.SKIPPED


def test_permanent_errors_are_not_retried(settings: Settings):
    def bad_data() -> None:
        raise PermanentStepError("3 rows have no id")

    pipeline = Pipeline("p")
    pipeline.add_task(Task("check", run=bad_data, retries=5, retry_delay=0))
    result = pipeline.run(settings=settings)
    assert result.tasks["check"].attempts == 1
    assert result.tasks["check"].error == "3 rows have no id"


def test_exponential_backoff_waits_between_attempts(settings: Settings):
    stamps: list[float] = []

    def fails_twice() -> None:
        stamps.append(time.monotonic())
        if len(stamps) < 3:
            raise RuntimeError("not yet")

    pipeline = Pipeline("p")
    pipeline.add_task(
        Task("t", run=fails_twice, retries=2, retry_delay=0.2, retry_backoff="exponential")
    )
    result = pipeline.run(settings=settings)
    assert result.status is RunStatus.SUCCESS
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # jitter keeps each wait within [50%, 100%] of 0.2 s then 0.4 s
    assert 0.09 <= gaps[0] <= 0.4 and 0.19 <= gaps[1] <= 0.7


def test_trigger_rules_route_around_a_failure(settings: Settings):
    def boom() -> None:
        raise RuntimeError("boom")

    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [
            Task("ok", run=lambda: None),
            Task("bad", run=boom),
            Task("needs_both").depends_on("ok", "bad"),
            Task("alert", trigger_rule="one_failed").depends_on("ok", "bad"),
            Task("cleanup", trigger_rule="all_done").depends_on("ok", "bad"),
            Task("downstream_of_skip").depends_on("needs_both"),
            Task("none_failed", trigger_rule="none_failed").depends_on("needs_both"),
        ]
    )
    result = pipeline.run(settings=settings)
    states = {k: v.state for k, v in result.tasks.items()}
    assert states == {
        "ok": TaskState.SUCCESS,
        "bad": TaskState.FAILED,
        "needs_both": TaskState.SKIPPED,
        "alert": TaskState.SUCCESS,
        "cleanup": TaskState.SUCCESS,
        "downstream_of_skip": TaskState.SKIPPED,
        "none_failed": TaskState.SUCCESS,
    }
    assert "bad failed" in result.tasks["needs_both"].error


def test_tables_pass_between_tasks_by_node_id(settings: Settings):
    def customers():
        return pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})

    def orders():
        return [{"customer_id": 1, "amount": 5.0}, {"customer_id": 3, "amount": 7.5}]

    seen = {}

    def join(inputs):
        seen["tables"] = sorted(inputs)
        customers, orders = inputs["customers"], inputs["orders"]
        return customers.join(orders, keys="id", right_keys="customer_id", join_type="inner")

    pipeline = Pipeline("p")
    pipeline.add_tasks(
        [
            Task("customers", run=customers),
            Task("orders", run=orders),
            Task("joined", run=join).depends_on("customers", "orders"),
        ]
    )
    result = pipeline.run(settings=settings)
    assert seen["tables"] == ["customers", "orders"]
    assert result.tasks["joined"].rows_in == 5
    assert result.tasks["joined"].rows_out == 2


def test_params_and_run_context_are_templated_into_configs(settings: Settings):
    got = {}

    def record(greeting, target):
        got.update(greeting=greeting, target=target)

    pipeline = Pipeline("p", params={"who": "world"})
    pipeline.add_task(
        Task(
            "t",
            run=record,
            config={
                "kwargs": {
                    "greeting": "hello {{ params.who }}",
                    "target": "{{ pipeline }}/{{ ds }}/{{ run_id }}",
                }
            },
        )
    )
    result = pipeline.run({"who": "team"}, settings=settings, ds="2026-03-04")
    assert got["greeting"] == "hello team"
    assert got["target"] == f"p/2026-03-04/{result.run_id}"


def test_an_undefined_param_is_refused_before_any_run_exists(settings: Settings):
    pipeline = Pipeline("p")
    pipeline.add_task(Task("t", run=print, config={"kwargs": {"x": "{{ params.missing }}"}}))
    with pytest.raises(SpecErrors) as info:
        pipeline.run(settings=settings)
    assert info.value.errors[0].node_id == "t"
    assert info.value.errors[0].field == "config.kwargs.x"
    assert RunStore.for_home(settings.home, settings.database_url).list_runs() == []


def test_a_timeout_fails_the_attempt_and_follows_the_retry_policy(settings: Settings):
    calls = []

    def slow(context) -> None:
        calls.append(1)
        if len(calls) == 1:
            while not context.cancel_event.is_set():
                time.sleep(0.01)

    pipeline = Pipeline("p")
    pipeline.add_task(Task("slow", run=slow, timeout=0.3, retries=1, retry_delay=0))
    result = pipeline.run(settings=settings)  # the first attempt only ends when stopped
    assert result.status is RunStatus.SUCCESS
    assert result.tasks["slow"].attempts == 2
    store = RunStore.for_home(settings.home, settings.database_url)
    attempts = store.get_attempts(result.run_id, "slow")
    assert attempts[0].error == "timed out after 0.3s"


def test_resume_reruns_only_what_failed_and_reuses_upstream_outputs(settings: Settings):
    calls = {"extract": 0, "load": 0}
    healthy = {"value": False}

    def extract():
        calls["extract"] += 1
        return pa.table({"n": list(range(10))})

    def load(inputs):
        calls["load"] += 1
        if not healthy["value"]:
            raise RuntimeError("database down")
        return inputs["extract"].num_rows

    pipeline = Pipeline("p")
    pipeline.add_tasks([Task("extract", run=extract), Task("load", run=load).depends_on("extract")])
    first = pipeline.run(settings=settings)
    assert first.status is RunStatus.FAILED

    healthy["value"] = True
    resumed = pipeline.resume(first.run_id, settings=settings)
    assert resumed.run_id == first.run_id
    assert resumed.status is RunStatus.SUCCESS
    assert calls == {"extract": 1, "load": 2}
    assert resumed.tasks["load"].rows_out == 10
    assert resumed.tasks["load"].attempts == 2

    with pytest.raises(RunStateError, match="already succeeded"):
        pipeline.resume(first.run_id, settings=settings)


def test_runs_work_with_a_postgresql_state_store(settings: Settings, pg_url: str):
    pg_settings = Settings(home=settings.home, database_url=pg_url)
    pipeline = Pipeline("p")
    pipeline.add_tasks([Task("a", run=lambda: 3), Task("b").depends_on("a")])
    result = pipeline.run(settings=pg_settings)
    assert result.status is RunStatus.SUCCESS
    store = RunStore(pg_url)
    assert store.get_run(result.run_id).status is RunStatus.SUCCESS
    assert len(store.get_attempts(result.run_id)) == 2
    store.dispose()


def test_a_run_taken_over_by_another_process_stops_and_records_nothing(settings: Settings):
    started = threading.Event()

    finished = threading.Event()

    def slow() -> None:
        started.set()
        for _ in range(600):
            time.sleep(0.05)
        finished.set()

    pipeline = Pipeline("p")
    pipeline.add_tasks([Task("slow", run=slow), Task("after").depends_on("slow")])
    raised: list[BaseException] = []

    def drive() -> None:
        try:
            pipeline.run(settings=settings)
        except RunTakenOver as exc:
            raised.append(exc)

    driver = threading.Thread(target=drive)
    driver.start()
    assert started.wait(10)
    store = RunStore.for_home(settings.home, settings.database_url)
    run_id = store.list_runs()[0].run_id
    # what a resume on another machine does once this process's heartbeat looks stale
    assert store.claim_run(run_id, "elsewhere:1:new", stale_after_s=0)
    driver.join(60)

    assert not driver.is_alive() and not finished.is_set()  # gave up before its task ended
    assert len(raised) == 1 and "taken over by another process" in str(raised[0])
    run = store.get_run(run_id)
    assert run.owner == "elsewhere:1:new" and run.status is RunStatus.RUNNING
    tasks = RunResult.load(store, run_id).tasks
    assert (tasks["slow"].state, tasks["after"].state) == (TaskState.RUNNING, TaskState.PENDING)
