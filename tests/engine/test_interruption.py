"""Ctrl-C (a ``KeyboardInterrupt`` in the engine's thread) leaves the run ``failed``,
released and resumable wherever it lands: every attempt it cut short is closed as
interrupted and its task is pending again, and ``resume`` finishes the run.

The Ctrl-C is raised from a listener hook, which runs on the engine's thread at a
chosen point of the run, as the default SIGINT handler raises it wherever that
thread is when the signal comes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchpilot.engine.listener import RunListener
from batchpilot.engine.runs import resume_run, start_run
from batchpilot.errors import RunInterrupted
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore


class CtrlCAtStart(RunListener):
    """Ctrl-C as the run starts, before its loop began."""

    def run_started(self, run_id: str, spec: PipelineSpec, states: dict[str, TaskState]) -> None:
        raise KeyboardInterrupt


class CtrlCWhenTaskSucceeds(RunListener):
    """Ctrl-C when ``task`` is shown succeeded: in the scheduling step that recorded it,
    which also committed its downstream task's start, before that task went to a worker."""

    def __init__(self, task: str) -> None:
        self.task = task

    def task_state_changed(
        self, task_id: str, state: TaskState, *, attempt: int, error: str | None = None
    ) -> None:
        if task_id == self.task and state is TaskState.SUCCESS:
            raise KeyboardInterrupt


@pytest.fixture
def store(settings: Settings) -> Iterator[RunStore]:
    store = RunStore.for_home(settings.home, settings.database_url)
    yield store
    store.dispose()


def chain() -> PipelineSpec:
    """``first`` (a step that never blocks, run on the engine's thread), then ``second``
    (a Python call, run on a worker)."""
    return build_pipeline(
        {
            "name": "chain",
            "nodes": [
                {"id": "first", "type": "empty"},
                {
                    "id": "second",
                    "type": "python",
                    "config": {"callable": "os:getpid"},
                    "depends_on": ["first"],
                },
            ],
        }
    )


def interrupted(spec: PipelineSpec, listener: RunListener, **run: object) -> str:
    """Start a run of ``spec`` that ``listener`` interrupts; the run's id."""
    try:
        start_run(spec, listener=listener, **run)  # type: ignore[arg-type]
    except RunInterrupted as stopped:
        return stopped.run_id
    except KeyboardInterrupt:  # caught here: escaping, it would stop the test session
        pytest.fail("the Ctrl-C escaped the engine: the run was not left resumable")
    pytest.fail("the run was not interrupted")


def assert_left_resumable(store: RunStore, run_id: str) -> None:
    run = store.get_run(run_id)
    assert (run.status, run.owner) == (RunStatus.FAILED, None)
    assert run.error == f"interrupted; resume with: batchpilot resume {run_id}"


def test_ctrl_c_as_the_run_starts_leaves_it_resumable(settings: Settings, store: RunStore):
    run_id = interrupted(chain(), CtrlCAtStart(), settings=settings, store=store)

    assert_left_resumable(store, run_id)
    assert {t.task_id: t.state for t in store.get_tasks(run_id)} == {
        "first": TaskState.PENDING,
        "second": TaskState.PENDING,
    }
    assert store.get_attempts(run_id) == []
    assert resume_run(run_id, settings=settings, store=store).status is RunStatus.SUCCESS


def test_ctrl_c_before_a_started_task_reached_its_worker_closes_its_attempt_as_interrupted(
    settings: Settings, store: RunStore
):
    run_id = interrupted(chain(), CtrlCWhenTaskSucceeds("first"), settings=settings, store=store)

    assert_left_resumable(store, run_id)
    tasks = {t.task_id: t.state for t in store.get_tasks(run_id)}
    assert tasks == {"first": TaskState.SUCCESS, "second": TaskState.PENDING}
    attempts = {(a.task_id, a.attempt): (a.state, a.error) for a in store.get_attempts(run_id)}
    assert attempts == {
        ("first", 1): (TaskState.SUCCESS, None),
        ("second", 1): (TaskState.FAILED, "interrupted"),
    }
    assert resume_run(run_id, settings=settings, store=store).status is RunStatus.SUCCESS
    assert [(a.task_id, a.attempt, a.state) for a in store.get_attempts(run_id)][-1] == (
        "second",
        2,
        TaskState.SUCCESS,
    )


def test_ctrl_c_as_a_resume_prepares_the_run_releases_it_for_the_next_resume(
    settings: Settings, store: RunStore, monkeypatch: pytest.MonkeyPatch
):
    """Between its claim and the engine's start, ``resume`` closes what a dead process
    left open and resets tasks: a Ctrl-C there (here, right after the open attempts were
    closed) must not leave the run claimed by a process that is gone."""
    from batchpilot.engine import resumption

    run_id = interrupted(chain(), CtrlCWhenTaskSucceeds("first"), settings=settings, store=store)
    close_dead_attempts = resumption.close_dead_attempts

    def closed_then_ctrl_c(*args: object, **kwargs: object) -> None:
        close_dead_attempts(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(resumption, "close_dead_attempts", closed_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        resume_run(run_id, settings=settings, store=store)
    assert store.get_run(run_id).owner is None

    monkeypatch.undo()
    assert resume_run(run_id, settings=settings, store=store).status is RunStatus.SUCCESS
