"""A run that cannot get going is refused before it exists, or ends ``failed`` with its
one-line reason: never ``running``."""

from __future__ import annotations

import pytest

from batchpilot import Pipeline, Task
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.runs import start_run
from batchpilot.errors import SpecError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore


def test_a_connection_url_with_a_bad_port_is_refused_before_a_run_exists(settings: Settings):
    settings = Settings(
        home=settings.home,
        database_url=settings.database_url,
        connections=ConnectionRegistry([Connection("db", "postgresql://u:s3cret@h:notaport/db")]),
    )
    query = {"id": "q", "type": "sql", "config": {"connection": "db", "sql": "SELECT 1"}}
    spec = build_pipeline({"name": "bad_port", "nodes": [query]})
    store = RunStore.for_home(settings.home, settings.database_url)

    with pytest.raises(SpecError) as refused:
        start_run(spec, settings=settings, store=store)

    message = str(refused.value)
    assert "notaport" in message and "config.connection" in message
    assert "s3cret" not in message
    assert store.list_runs() == []  # nothing recorded, nothing left running
    store.dispose()


def test_a_failure_before_the_first_task_ends_the_run_failed_with_its_reason(settings: Settings):
    settings.home.mkdir(parents=True)
    (settings.home / "runs").write_text("a file where the runs folder should be")
    pipeline = Pipeline("p")
    pipeline.add_tasks([Task("a", run=lambda: 1)])

    result = pipeline.run(settings=settings)

    assert result.status is RunStatus.FAILED
    assert result.error is not None and "\n" not in result.error
    assert "runs" in result.error
    store = RunStore.for_home(settings.home, settings.database_url)
    run = store.get_run(result.run_id)
    assert (run.status, run.owner) == (RunStatus.FAILED, None)
    assert store.get_attempts(result.run_id) == []
    store.dispose()
