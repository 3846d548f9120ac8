"""``serve``'s monitor looks for ended runs when its dispatcher saw a worker end (at once,
not at the next 2-second step), and otherwise only every ``evaluate_every_s``: an idle
``serve`` does not read the store for them every 2 s."""

from __future__ import annotations

import threading

from batchpilot.clock import FakeClock
from batchpilot.monitor.serve_loop import MonitorLoop
from batchpilot.notify import ChannelRegistry
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from tests.alerts.history import add_run, pipeline_document


def add_failed_run(store: RunStore, clock: FakeClock) -> str:
    """A run of ``nightly`` that failed just now (by ``clock``); returns its id."""
    return add_run(
        store,
        pipeline_document("nightly"),
        status=RunStatus.FAILED,
        started_at=clock.now(),
        duration_s=5,
    )


def test_ended_runs_are_evaluated_when_a_worker_ended_else_only_when_the_slow_look_is_due(
    store: RunStore, clock: FakeClock
) -> None:
    runs_ended = threading.Event()
    loop = MonitorLoop(
        store,
        ChannelRegistry([]),
        clock,
        threading.Event(),
        runs_ended=runs_ended,
        evaluate_every_s=3600.0,
    )
    loop.step()  # the first step looks: runs that ended while serve was down
    failed = add_failed_run(store, clock)
    loop.step()
    assert store.alerts.list() == []  # nobody said a run ended; the slow look is an hour away

    runs_ended.set()  # the dispatcher saw the run's worker end
    loop.step()
    [alert] = store.alerts.list()
    assert (alert.rule, alert.run_id) == ("failure", failed)
    assert not runs_ended.is_set()  # seen: the next pause waits again


def test_without_a_wake_up_event_every_step_evaluates(store: RunStore, clock: FakeClock) -> None:
    loop = MonitorLoop(store, ChannelRegistry([]), clock, threading.Event())
    loop.step()
    failed = add_failed_run(store, clock)
    loop.step()
    [alert] = store.alerts.list()
    assert alert.run_id == failed
