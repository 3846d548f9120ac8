"""Steps that never block (``empty``) run on the engine's own thread, with no hand-off to
a worker: their transitions are still each committed before the next step starts, and
their attempts are recorded like any other's, each log kept with its attempt's record
(no file of its own), and read like any other. A step type that only inherits the promise,
overriding what it runs, still runs on a worker, where a timeout stops it."""

from __future__ import annotations

from batchpilot import Pipeline, RunStatus, Task, TaskState
from batchpilot.engine import RunService
from batchpilot.engine.listener import RunListener
from batchpilot.engine.runs import start_run
from batchpilot.executors import default_executors
from batchpilot.settings import Settings
from batchpilot.spec import build_pipeline
from batchpilot.steps.base import StepContext, StepResult
from batchpilot.steps.empty import EmptyStep
from batchpilot.steps.registry import BUILTIN_STEPS, StepRegistry
from batchpilot.store import RunStore
from tests.engine.concurrency import PeakConcurrency

JOINS = {
    "name": "joins",
    "nodes": [
        {"id": "start", "type": "empty"},
        {"id": "a", "type": "empty", "depends_on": ["start"]},
        {"id": "b", "type": "empty", "depends_on": ["start"]},
        {"id": "join", "type": "empty", "depends_on": ["a", "b"]},
    ],
}


class StoredStates(RunListener):
    """What the store holds (read on a connection of its own) when each task starts."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.run_id = ""
        self.seen: dict[str, dict[str, TaskState]] = {}

    def run_started(self, run_id, spec, states) -> None:  # type: ignore[no-untyped-def]
        self.run_id = run_id

    def task_state_changed(self, task_id, state, *, attempt, error=None) -> None:  # type: ignore[no-untyped-def]
        if state is TaskState.RUNNING:
            tasks = self.store.get_tasks(self.run_id)
            self.seen[task_id] = {t.task_id: t.state for t in tasks}


def test_each_empty_task_is_committed_running_and_its_upstream_succeeded_before_it_runs(
    settings: Settings,
):
    store = RunStore.for_home(settings.home, settings.database_url)
    reader = RunStore.for_home(settings.home, settings.database_url)
    listener = StoredStates(reader)
    result = start_run(build_pipeline(JOINS), settings=settings, store=store, listener=listener)
    assert result.status is RunStatus.SUCCESS
    assert listener.seen["start"]["start"] is TaskState.RUNNING
    for task_id in ("a", "b"):
        assert listener.seen[task_id][task_id] is TaskState.RUNNING
        assert listener.seen[task_id]["start"] is TaskState.SUCCESS
    assert listener.seen["join"]["join"] is TaskState.RUNNING
    assert listener.seen["join"]["a"] is listener.seen["join"]["b"] is TaskState.SUCCESS


def test_an_empty_tasks_attempt_is_recorded_with_its_log_and_no_log_file(settings: Settings):
    store = RunStore.for_home(settings.home, settings.database_url)
    result = start_run(build_pipeline(JOINS), settings=settings, store=store)
    for task_id in ("start", "a", "b", "join"):
        [attempt] = store.get_attempts(result.run_id, task_id)
        assert attempt.state is TaskState.SUCCESS
        assert attempt.ended_at is not None and attempt.ended_at >= attempt.started_at
        assert attempt.log_path is None
        lines = str(attempt.log_text).splitlines()
        assert len(lines) == 2
        assert lines[0].endswith(f"run {result.run_id}, task {task_id} (empty), attempt 1")
        assert lines[1].endswith("INFO succeeded: done")
    assert [p for p in (settings.runs_dir / result.run_id).rglob("*") if p.is_file()] == []


def test_an_empty_tasks_log_is_read_and_followed_like_any_other(settings: Settings):
    store = RunStore.for_home(settings.home, settings.database_url)
    service = RunService(settings=settings, store=store, executors=default_executors())
    run_id = start_run(build_pipeline(JOINS), settings=settings, store=store).run_id
    logs = service.read_logs(run_id)
    assert [(log.task_id, log.attempt, log.log_path) for log in logs] == [
        ("start", 1, None),
        ("a", 1, None),
        ("b", 1, None),
        ("join", 1, None),
    ]
    (join,) = service.read_logs(run_id, task="join")
    assert join.text.endswith("INFO succeeded: done\n")
    assert join.next_offset == len(join.text.encode())
    cut = join.text.index("INFO succeeded")
    (rest,) = service.read_logs(run_id, task="join", offset=cut)
    assert (rest.text, rest.next_offset) == (join.text[cut:], join.next_offset)
    followed = [(log.task_id, log.text) for log in service.follow_logs(run_id)]
    assert followed == [(log.task_id, log.text) for log in logs]


class WaitForCancel(EmptyStep):
    """Inherits ``never_blocks`` from ``empty`` but blocks until it is stopped."""

    type_name = "test.wait_for_cancel"

    def run(self, ctx: StepContext) -> StepResult:
        ctx.cancel_event.wait(60)
        return StepResult()


def test_a_step_that_overrides_an_empty_steps_run_still_times_out(settings: Settings):
    registry = StepRegistry()
    for type_name, target in BUILTIN_STEPS.items():
        registry.register_lazy(type_name, target)
    registry.register(WaitForCancel)
    document = {
        "name": "stuck",
        "nodes": [{"id": "wait", "type": "test.wait_for_cancel", "timeout": 0.3}],
    }
    store = RunStore.for_home(settings.home, settings.database_url)
    result = start_run(build_pipeline(document), settings=settings, store=store, registry=registry)
    assert result.status is RunStatus.FAILED
    [attempt] = store.get_attempts(result.run_id, "wait")
    assert attempt.error == "timed out after 0.3s"


def test_empty_tasks_take_no_worker_and_the_others_still_keep_to_the_worker_count(
    settings: Settings,
):
    probe = PeakConcurrency(hold_s=0.05)
    pipeline = Pipeline("mixed")
    start = Task("start")
    middle = [Task(f"w{i}", run=probe.work, depends_on=start) for i in range(3)]
    middle += [Task(f"e{i}", depends_on=start) for i in range(5)]
    pipeline.add_tasks([start, *middle, Task("join", depends_on=middle)])
    one_worker = Settings(home=settings.home, database_url=settings.database_url, workers=1)
    result = pipeline.run(settings=one_worker)
    assert result.status is RunStatus.SUCCESS
    assert all(t.state is TaskState.SUCCESS for t in result.tasks.values())
    assert probe.peak == 1
