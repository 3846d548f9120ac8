"""Fixtures for monitor tests: a home on a real state store (SQLite, then PostgreSQL),
the engine's services on it, and small pipelines run for real."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchpilot.connections import ConnectionRegistry
from batchpilot.engine import RunService, new_run_id, queued_run
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunTrigger
from batchpilot.store import RunStore


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A home under tmp_path on SQLite, then on a fresh PostgreSQL database."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return Settings(
        home=tmp_path / "home", database_url=url, workers=2, connections=ConnectionRegistry()
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[RunStore]:
    store = RunStore.for_home(settings.home, settings.database_url)
    yield store
    store.dispose()


@pytest.fixture
def service(settings: Settings, store: RunStore) -> RunService:
    return RunService(settings=settings, store=store)


@pytest.fixture
def csv_pipeline(tmp_path: Path) -> Callable[..., PipelineSpec]:
    """A pipeline ``extract`` (a CSV of ``rows`` rows) → ``load`` (a CSV file per run);
    with ``fail`` its extract reads a file that does not exist."""

    def make(name: str = "daily", *, rows: int = 3, fail: bool = False) -> PipelineSpec:
        folder = tmp_path / "pipelines" / f"{name}-{rows}-{fail}"
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "data.csv"
        data.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(rows)))
        document: dict[str, Any] = {
            "name": name,
            "nodes": [
                {
                    "id": "extract",
                    "type": "extract.csv",
                    "config": {"path": str(folder / ("missing.csv" if fail else "data.csv"))},
                    "retries": 0,
                },
                {
                    "id": "load",
                    "type": "load.file",
                    "config": {"path": "{{ pipeline_dir }}/out/{{ run_id }}.csv"},
                    "depends_on": ["extract"],
                },
            ],
        }
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return load_pipeline(path)

    return make


def run_scheduled(service: RunService, spec: PipelineSpec, slot: datetime) -> str:
    """Claim ``slot`` of ``spec`` as the scheduler does, then drive its run; its id."""
    run = queued_run(
        spec,
        run_id=new_run_id(),
        ds=slot.date().isoformat(),
        slot=slot,
        triggered_by=RunTrigger.SCHEDULE,
    )
    service.store.schedules.claim_slot(run)
    service.execute(run.run_id)
    return run.run_id
