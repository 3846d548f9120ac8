"""What a step sees: a context built whole and never changed, and the inputs of an
attempt that started early, known only once its task really started."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import pytest

from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.connections import ConnectionRegistry
from batchpilot.errors import StepError
from batchpilot.steps.base import DeferredInputs, StepContext

REF = ArtifactRef("/runs/r/artifacts/up.arrow", 5)


def context(tmp_path: Path, **fields) -> StepContext:
    return StepContext(
        pipeline="p",
        run_id="r",
        task_id="t",
        attempt=1,
        params={},
        inputs=fields.pop("inputs", {}),
        artifacts=ArtifactStore(tmp_path),
        connections=ConnectionRegistry(),
        log=logging.getLogger("test"),
        **fields,
    )


def test_a_steps_context_cannot_be_changed(tmp_path: Path):
    ctx = context(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.inputs = {"up": REF}  # type: ignore[misc]


def test_early_inputs_are_refused_before_the_task_started_then_resolved_once(tmp_path: Path):
    started = threading.Event()
    calls: list[int] = []

    def resolve() -> dict[str, ArtifactRef]:
        calls.append(1)
        return {"up": REF}

    ctx = context(tmp_path, inputs=DeferredInputs(resolve, started), start_signal=started)
    with pytest.raises(StepError, match="wait_for_start"):
        ctx.single_input()

    started.set()
    ctx.wait_for_start()

    assert ctx.single_input() == REF
    assert dict(ctx.inputs) == {"up": REF}
    assert calls == [1]
