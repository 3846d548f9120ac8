"""Build a real StepContext for a step test: artifacts in tmp_path, named connections."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from batchpilot.artifacts import ArtifactRef, ArtifactStore, read_table
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.steps.base import Step, StepContext, StepResult
from batchpilot.steps.registry import default_registry


def make_context(
    tmp_path: Path,
    inputs: Mapping[str, pa.Table] | None = None,
    connections: Mapping[str, str] | None = None,
    *,
    task_id: str = "task",
    run_id: str = "run-1",
    pipeline: str = "test_pipeline",
) -> StepContext:
    """A context whose upstream outputs are ``inputs`` (written as Arrow files by node id)."""
    store = ArtifactStore(tmp_path / "artifacts")
    refs: dict[str, ArtifactRef] = {
        node_id: store.write_table(node_id, table) for node_id, table in (inputs or {}).items()
    }
    registry = ConnectionRegistry(
        [Connection(name, url, origin="test") for name, url in (connections or {}).items()]
    )
    return StepContext(
        pipeline=pipeline,
        run_id=run_id,
        task_id=task_id,
        attempt=1,
        params={},
        inputs=refs,
        artifacts=store,
        connections=registry,
        log=logging.getLogger("test"),
    )


def make_step(type_name: str, **config: Any) -> Step:
    """The registered step ``type_name`` with its config validated as the engine does."""
    step_class = default_registry().get(type_name)
    return step_class(step_class.Config(**config))


def run_step(type_name: str, ctx: StepContext, **config: Any) -> StepResult:
    """Validate ``config`` and run the step in ``ctx``."""
    return make_step(type_name, **config).run(ctx)


def output_table(result: StepResult, name: str | None = None) -> pa.Table:
    """The step's main output (or the named side output) as a table."""
    ref = result.output if name is None else result.side_outputs[name]
    assert ref is not None, "the step wrote no output"
    return read_table(ref)
