"""The run supervisor (shared by serve and backfill) and the dead runs serve acts on."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from batchpilot.engine import RunService
from batchpilot.engine.queued import queue_checked_run
from batchpilot.scheduler.supervisor import RunSupervisor
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore

PIPELINE = {"name": "two", "nodes": [{"id": "a", "type": "empty"}]}


def queue(settings: Settings, store: RunStore, run_id: str) -> str:
    spec = build_pipeline(PIPELINE)
    return queue_checked_run(
        spec, settings=settings, store=store, run_id=run_id, ds="2024-01-01"
    ).run_id


def test_the_supervisor_runs_queued_runs_in_workers_at_most_max_runs_at_once(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    store = RunStore.for_home(settings.home)
    first, second = queue(settings, store, "run-1"), queue(settings, store, "run-2")
    supervisor = RunSupervisor(settings, max_runs=1)
    assert supervisor.submit(first) and supervisor.submit(second)
    assert supervisor.submit(first) is False
    assert supervisor.poll() == []
    assert supervisor.running == [first] and supervisor.waiting == [second]
    ends = []
    deadline = time.monotonic() + 120
    while len(ends) < 2 and time.monotonic() < deadline:
        ends += supervisor.poll()
        assert len(supervisor.running) <= 1
        time.sleep(0.1)
    assert [(e.run_id, e.exit_code) for e in ends] == [(first, 0), (second, 0)]
    assert [store.get_run(r).status for r in (first, second)] == [RunStatus.SUCCESS] * 2
    assert (settings.home / "serve" / "workers" / f"{first}.log").exists()
    store.dispose()


def test_a_run_queued_for_serve_is_neither_dead_nor_reaped_but_one_whose_process_died_is(
    tmp_path: Path,
):
    settings = Settings(home=tmp_path / "home")
    store = RunStore.for_home(settings.home)
    service = RunService(settings=settings, store=store)
    waiting = queue(settings, store, "waiting")
    orphan = queue(settings, store, "orphan")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    store.claim_run(orphan, f"{socket.gethostname()}:{gone.stdout.strip()}:x", stale_after_s=30)
    store.set_run_status(orphan, RunStatus.RUNNING)
    assert [r.run_id for r in service.dead_runs()] == [orphan]
    assert [r.run_id for r in service.reap()] == [orphan]
    assert store.get_run(waiting).status is RunStatus.QUEUED
    assert store.get_run(orphan).status is RunStatus.FAILED
    store.dispose()


def test_the_dispatcher_holds_a_schedule_s_runs_back_beyond_max_active_runs(tmp_path: Path):
    from batchpilot.engine.queued import queued_run
    from batchpilot.scheduler.components import ServeContext, ServeOptions
    from batchpilot.scheduler.dispatcher import RunDispatcher
    from batchpilot.states import RunTrigger

    settings = Settings(home=tmp_path / "home")
    store = RunStore.for_home(settings.home)
    spec = build_pipeline({**PIPELINE, "schedule": {"cron": "0 * * * *", "max_active_runs": 2}})
    slots = [datetime(2024, 1, 1, hour, tzinfo=UTC) for hour in (3, 1, 2)]
    for hour, slot in zip((3, 1, 2), slots, strict=True):
        run = queued_run(
            spec,
            run_id=f"slot-{hour}",
            ds="2024-01-01",
            slot=slot,
            triggered_by=RunTrigger.SCHEDULE,
        )
        store.schedules.claim_slot(run)
    queue(settings, store, "manual")
    store.schedules.claim_slot(
        queued_run(
            spec,
            run_id="backfill",
            ds="2023-01-01",
            slot=datetime(2023, 1, 1, tzinfo=UTC),
            triggered_by=RunTrigger.BACKFILL,
        )
    )
    supervisor = RunSupervisor(settings, max_runs=4)
    dispatcher = RunDispatcher(
        ServeContext(settings=settings, store=store),
        supervisor,
        lambda: {"two": spec},
        ServeOptions(pipelines=tmp_path),
    )
    dispatcher.submit_startable()  # submits only: nothing starts until poll()
    assert supervisor.waiting == ["slot-1", "slot-2", "manual"]
    dispatcher.submit_startable()
    assert supervisor.waiting == ["slot-1", "slot-2", "manual"]
    store.dispose()


def test_given_a_python_the_supervisor_runs_each_worker_as_a_fresh_worker_module_process(
    tmp_path: Path,
):
    settings = Settings(home=tmp_path / "home")
    store = RunStore.for_home(settings.home)
    run_id = queue(settings, store, "fresh")
    supervisor = RunSupervisor(settings, python=sys.executable)  # python -m ...scheduler.worker
    supervisor.submit(run_id)
    ends = []
    deadline = time.monotonic() + 120
    while not ends and time.monotonic() < deadline:
        ends += supervisor.poll()
        supervisor.wait_for_end(0.1)
    assert [(e.run_id, e.exit_code) for e in ends] == [(run_id, 0)]
    assert store.get_run(run_id).status is RunStatus.SUCCESS
    assert (settings.home / "serve" / "workers" / f"{run_id}.log").exists()
    store.dispose()
