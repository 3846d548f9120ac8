"""The engine services the edges call: start, follow, cancel, compensate, list, show, logs,
and the checks, on both state stores; runs on this machine through the local executor."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from batchpilot import Pipeline, RunStatus, Task, TaskState
from batchpilot.engine import (
    LOCAL,
    Executor,
    LocalExecutor,
    RunListener,
    RunService,
    UnknownExecutor,
    check_connection,
    check_pipeline_file,
    default_executors,
    run_summary,
)
from batchpilot.errors import ConnectionError, RunNotFound, RunStateError, SpecErrors
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore


def _greeting_pipeline(name: str = "greet", *, fail: bool = False) -> PipelineSpec:
    def say_hello() -> None:
        print("hello from the task")
        print("second line")

    def broken() -> None:
        raise ValueError("the input has no header row")

    pipeline = Pipeline(name)
    hello = Task("hello", run=say_hello)
    pipeline.add_task(hello)
    if fail:
        pipeline.add_task(Task("load", run=broken).depends_on(hello))
    return pipeline.to_spec()


class Recorder(RunListener):
    """Keeps the events a run reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def run_started(self, run_id: str, spec: PipelineSpec, states: dict[str, TaskState]) -> None:
        self.events.append(("started", run_id))

    def task_state_changed(
        self, task_id: str, state: TaskState, *, attempt: int, error: str | None = None
    ) -> None:
        self.events.append((task_id, state.value))

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        self.events.append(("finished", status.value))


@pytest.fixture
def service(settings: Settings, store: RunStore) -> RunService:
    return RunService(settings=settings, store=store)


def test_a_run_started_locally_is_listed_shown_and_its_logs_read(service: RunService):
    started = service.start(_greeting_pipeline(), on=LOCAL, ds="2024-03-01")
    assert started.status is RunStatus.SUCCESS

    listed = service.list_runs()
    assert [(r.run_id, r.executor, r.status) for r in listed] == [
        (started.run_id, "local", RunStatus.SUCCESS)
    ]
    assert run_summary(listed[0])["status"] == "success"
    assert service.show_run(started.run_id[:12]) == started  # a unique prefix is enough

    (log,) = service.read_logs(started.run_id, task="hello")
    assert (log.task_id, log.attempt, log.state) == ("hello", 1, "success")
    assert "hello from the task" in log.text and "second line" in log.text
    assert log.to_dict()["log"] == log.text
    assert set(log.to_dict()) == {"task_id", "attempt", "state", "error", "log_path", "log"}


def test_a_caller_may_name_the_run_before_it_exists(service: RunService):
    started = service.start(_greeting_pipeline(), run_id="20240301T020000-nightly")
    assert started.run_id == "20240301T020000-nightly"
    assert service.show_run("20240301T020000-nightly").status is RunStatus.SUCCESS


def test_logs_are_read_from_an_offset_so_a_follower_gets_only_new_text(service: RunService):
    run_id = service.start(_greeting_pipeline()).run_id
    (whole,) = service.read_logs(run_id)
    cut = whole.text.index("second line")
    (rest,) = service.read_logs(run_id, offset=cut)
    assert rest.text == whole.text[cut:]
    assert rest.next_offset == whole.next_offset
    (nothing_new,) = service.read_logs(run_id, offset=whole.next_offset)
    assert nothing_new.text == "" and nothing_new.next_offset == whole.next_offset


def test_logs_of_an_unknown_task_name_the_run_s_tasks(service: RunService):
    run_id = service.start(_greeting_pipeline(fail=True)).run_id
    with pytest.raises(RunStateError, match=r"has no task 'nope' \(tasks: hello, load\)"):
        service.read_logs(run_id, task="nope")
    with pytest.raises(RunNotFound):
        service.read_logs("no-such-run")


def test_a_failed_run_is_retried_and_compensation_needs_something_to_undo(service: RunService):
    spec = _greeting_pipeline(fail=True)
    failed = service.start(spec)
    assert failed.status is RunStatus.FAILED
    assert failed.tasks["load"].error and "no header row" in failed.tasks["load"].error
    with pytest.raises(RunStateError, match="no succeeded task to compensate"):
        service.compensate(failed.run_id)
    retried = service.retry(failed.run_id, spec=spec)
    assert retried.run_id == failed.run_id
    assert retried.tasks["load"].attempts == 2
    with pytest.raises(RunStateError, match="only a queued or running run can be cancelled"):
        service.cancel(failed.run_id)


def test_an_unknown_executor_is_refused_before_anything_is_recorded(service: RunService):
    with pytest.raises(
        UnknownExecutor, match=r"unknown executor 'kubernetes' \(known: airflow, local\)"
    ):
        service.start(_greeting_pipeline(), on="kubernetes")
    assert service.list_runs() == []


def test_an_invalid_pipeline_records_no_run(service: RunService):
    pipeline = Pipeline("bad")
    pipeline.add_task(Task("load", type="no.such.step"))
    with pytest.raises(SpecErrors):
        service.start(pipeline.to_spec())
    assert service.list_runs() == []


def test_follow_reports_a_run_another_thread_drives_until_it_ends(
    settings: Settings, store: RunStore
):
    release = threading.Event()
    pipeline = Pipeline("waits")
    pipeline.add_task(Task("wait", run=lambda: release.wait(60)))
    driver = RunService(settings=settings, store=store)
    outcome: list[RunStatus] = []
    thread = threading.Thread(
        target=lambda: outcome.append(driver.start(pipeline.to_spec()).status)
    )
    thread.start()
    try:
        run_id = _wait_for_a_running_task(store)

        class ReleaseWhenFollowing(Recorder):
            def run_started(self, run_id: str, spec: PipelineSpec, states: dict) -> None:
                super().run_started(run_id, spec, states)
                release.set()  # the run may end only once the follower is watching

        follower = ReleaseWhenFollowing()
        executor = LocalExecutor(poll_s=0.05)
        result = executor.follow(store.get_run(run_id), store=store, listener=follower)
    finally:
        release.set()
        thread.join(60)
    assert result.status is RunStatus.SUCCESS and outcome == [RunStatus.SUCCESS]
    assert follower.events[0] == ("started", run_id)
    assert ("wait", "success") in follower.events
    assert follower.events[-1] == ("finished", "success")


def test_follow_of_an_ended_run_returns_its_result_at_once(service: RunService):
    started = service.start(_greeting_pipeline())
    recorder = Recorder()
    assert service.follow(started.run_id, listener=recorder) == started
    assert recorder.events == [("started", started.run_id), ("finished", "success")]


def test_both_executors_implement_the_interface():
    executors = default_executors()
    assert executors.names() == ["airflow", "local"]
    for name in executors.names():
        executor = executors.get(name)
        assert isinstance(executor, Executor)
        assert executor.name == name


def test_a_pipeline_file_is_checked_without_running(tmp_path: Path, settings: Settings):
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nnodes: [{id: a, type: empty}]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnodes: [{id: a, type: no.such.step}]\n")
    assert check_pipeline_file(good, settings=settings).to_dict() == {
        "path": str(good),
        "ok": True,
        "pipeline": "good",
        "errors": [],
    }
    checked = check_pipeline_file(bad, settings=settings)
    assert not checked.ok
    assert "pipeline" not in checked.to_dict()
    assert len(checked.errors) == 1 and "node 'a'" in checked.errors[0]


def test_a_connection_answers_or_says_why_without_its_password(tmp_path: Path):
    from batchpilot.connections import Connection, ConnectionRegistry

    registry = ConnectionRegistry(
        [
            Connection("local", f"sqlite:///{tmp_path / 'x.db'}"),
            Connection("down", "postgresql://etl:hunter2@127.0.0.1:1/dwh?connect_timeout=2"),
        ]
    )
    settings = Settings(home=tmp_path / "home", connections=registry)
    assert check_connection("local", settings=settings).ok
    down = check_connection("down", settings=settings)
    assert not down.ok
    assert down.masked_url == "postgresql://etl:***@127.0.0.1:1/dwh?connect_timeout=2"
    assert down.reason and "hunter2" not in down.reason
    with pytest.raises(ConnectionError, match=r"unknown connection 'nope' \(known: down, local\)"):
        check_connection("nope", settings=settings)


def _wait_for_a_running_task(store: RunStore) -> str:
    """The id of the only run, once its task is running (the engine thread got there)."""
    for _ in range(3000):  # a guard against a hang, not a timing assertion
        runs = store.list_runs()
        if runs and any(t.state is TaskState.RUNNING for t in store.get_tasks(runs[0].run_id)):
            return runs[0].run_id
        threading.Event().wait(0.02)
    raise AssertionError("the run's task never started")
