"""serve's scheduler loop wakes at the next slot's instant, and tells the dispatcher at once.

A real catalog folder and a real SQLite state store; time is a fake clock, so the
waits are read, not slept.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchpilot.clock import FakeClock
from batchpilot.engine import new_run_id
from batchpilot.scheduler.catalog import PipelineCatalog
from batchpilot.scheduler.components import ServeContext, ServeOptions
from batchpilot.scheduler.dispatcher import RunDispatcher
from batchpilot.scheduler.serve import SLOT_MARGIN_S, SchedulerLoop
from batchpilot.scheduler.supervisor import RunSupervisor
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.serialize import spec_to_document
from batchpilot.store import RunStore
from tests.scheduler.conftest import write_pipeline

NOON = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def context(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    store = RunStore.for_home(settings.home)
    yield ServeContext(settings=settings, store=store, clock=FakeClock(NOON))
    store.dispose()


def scheduler_loop(context: ServeContext, folder: Path) -> SchedulerLoop:
    catalog = PipelineCatalog(folder, settings=context.settings)
    return SchedulerLoop(context, catalog, ServeOptions(pipelines=folder, tick_s=1.0))


def test_the_loop_sleeps_until_the_next_slot_and_claims_it_on_waking(context, tmp_path: Path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "minutely", {"cron": "* * * * *", "overlap": "allow"})
    clock: FakeClock = context.clock  # type: ignore[assignment]
    clock.set(NOON + timedelta(seconds=59.4))
    loop = scheduler_loop(context, folder)
    loop.step()  # a new schedule: runs its newest slot, 12:00
    assert context.runs_queued.is_set()
    assert loop.next_wait_s() == pytest.approx(0.6 + SLOT_MARGIN_S)
    assert loop.pause() is False  # the fake clock moves by the wait
    assert clock.now() == NOON + timedelta(minutes=1, seconds=SLOT_MARGIN_S)
    context.runs_queued.clear()
    loop.step()
    assert context.runs_queued.is_set()
    slots = sorted(r.slot for r in context.store.list_runs(pipeline="minutely"))
    assert slots == [NOON, NOON + timedelta(minutes=1)]


def test_with_no_slot_due_within_a_tick_the_loop_still_passes_every_tick(context, tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "nightly", {"cron": "0 2 * * *"})
    loop = scheduler_loop(context, folder)
    loop.step()
    assert loop.next_wait_s() == 1.0  # file and upstream triggers are looked at every tick
    context.stopping.set()
    assert loop.pause() is True


def test_the_dispatcher_looks_at_once_when_runs_were_queued(context, tmp_path: Path):
    options = ServeOptions(pipelines=tmp_path, dispatch_s=3600.0)
    supervisor = RunSupervisor(context.settings, max_runs=1)
    dispatcher = RunDispatcher(context, supervisor, dict, options)
    woke = threading.Event()

    def wait_once() -> None:
        dispatcher.pause()
        woke.set()

    waiter = threading.Thread(target=wait_once, daemon=True)
    waiter.start()
    context.runs_queued.set()  # what a pass that queued runs does
    assert woke.wait(60), "the dispatcher slept on though runs were queued"
    waiter.join()
    dispatcher.step()  # the look it woke for clears the event before it reads the store
    assert not context.runs_queued.is_set()  # seen, ready for the next pass


def test_the_dispatcher_looks_less_often_while_idle_and_wakes_the_monitor_when_a_run_ended(
    context, tmp_path: Path
):
    options = ServeOptions(pipelines=tmp_path, dispatch_s=0.01, dispatch_idle_s=0.5)
    supervisor = RunSupervisor(context.settings, max_runs=1)
    dispatcher = RunDispatcher(context, supervisor, dict, options)
    dispatcher.step()
    assert dispatcher.busy is False  # nothing queued or running: the next look in 0.5 s

    spec = build_pipeline({"name": "hello", "nodes": [{"id": "a", "type": "empty"}]})
    run_id = new_run_id()
    context.store.create_run(
        run_id=run_id,
        pipeline=spec.name,
        spec=spec_to_document(spec),
        params={},
        ds="2024-03-10",
        source_path=None,
        task_ids=spec.node_ids,
    )
    context.runs_queued.set()  # what the API's execute does
    assert dispatcher.pause() is False  # woken at once, whatever the interval
    dispatcher.step()
    assert dispatcher.busy is True and supervisor.holds(run_id)
    while not context.runs_ended.is_set():  # the worker ends; the monitor is told
        supervisor.wait_for_end(1.0)
        dispatcher.step()
    assert context.store.get_run(run_id).status.value == "success"
    supervisor.stop()
