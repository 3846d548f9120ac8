"""``serve`` with ``BATCHPILOT_RETENTION``: old runs are cleaned at start, then daily by
the clock (a fake clock here: no waiting)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from batchpilot.clock import FakeClock
from batchpilot.engine import RunService
from batchpilot.errors import RunNotFound
from batchpilot.scheduler.components import ServeContext, ServeOptions
from batchpilot.scheduler.serve import RetentionLoop, ServeProcess
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore, utcnow


def test_serve_cleans_at_start_then_once_a_day(
    service: RunService,
    store: RunStore,
    settings: Settings,
    csv_pipeline: Callable[..., PipelineSpec],
):
    first = service.start(csv_pipeline("daily")).run_id
    clock = FakeClock(utcnow() + timedelta(days=31))
    said: list[str] = []
    context = ServeContext(settings=settings, store=store, clock=clock, say=said.append)
    loop = RetentionLoop(context, retention_s=30 * 86400)

    loop.step()  # at start
    with pytest.raises(RunNotFound):
        store.get_run(first)
    assert not (settings.runs_dir / first).exists()
    assert said == [f"retention: deleted 1 runs that ended before {_cutoff(clock, 30)} UTC"]

    second = service.start(csv_pipeline("daily")).run_id  # old by the fake clock too
    clock.advance(timedelta(hours=23))
    loop.step()  # not a day yet
    assert store.get_run(second)
    clock.advance(timedelta(hours=1))
    loop.step()
    with pytest.raises(RunNotFound):
        store.get_run(second)


def _cutoff(clock: FakeClock, days: int) -> str:
    return f"{clock.now() - timedelta(days=days):%Y-%m-%d %H:%M}"


def test_serve_has_a_retention_component_only_when_a_retention_is_set(
    settings: Settings, store: RunStore, tmp_path: Path
):
    options = ServeOptions(pipelines=tmp_path)
    without = ServeProcess(options, ServeContext(settings=settings, store=store))
    assert [c.name for c in without.components] == ["scheduler", "dispatcher"]
    with_retention = ServeProcess(
        options, ServeContext(settings=replace(settings, retention_s=86400.0), store=store)
    )
    assert [c.name for c in with_retention.components] == ["scheduler", "dispatcher", "retention"]
