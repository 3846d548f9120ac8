"""Fixtures for scheduler tests: a real state store (SQLite, then PostgreSQL) and pipelines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[RunStore]:
    """A migrated SQLite state store (for rules the contract tests prove on both stores)."""
    store = RunStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.dispose()


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
