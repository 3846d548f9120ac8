"""Fixtures for scheduler tests: pipelines (the state stores are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec


@pytest.fixture
def scheduled_pipeline() -> Callable[..., PipelineSpec]:
    """A one-node pipeline with the given ``schedule`` (text or mapping)."""

    def make(schedule: Any, name: str = "nightly") -> PipelineSpec:
        document = {"name": name, "schedule": schedule, "nodes": [{"id": "noop", "type": "empty"}]}
        return build_pipeline(document)

    return make


def write_pipeline(folder: Path, name: str, schedule: Any = None, **extra: Any) -> Path:
    """Write ``<name>.yaml`` under ``folder``: one empty node (or ``nodes``) and a schedule."""
    nodes = extra.pop("nodes", [{"id": "noop", "type": "empty"}])
    document: dict[str, Any] = {"name": name, "nodes": nodes}
    if schedule is not None:
        document["schedule"] = schedule
    document.update(extra)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
