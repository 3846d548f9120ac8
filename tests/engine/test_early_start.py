"""A load starts while its extract still writes, and commits only once the extract succeeded.

The extract here is a Python task that writes its output batch by batch and,
before its last batch, watches PostgreSQL: the load's COPY must already be
running, and none of its rows visible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from batchpilot import Pipeline, RunStatus, Task, TaskState
from batchpilot.artifacts import ArtifactStore, read_table
from batchpilot.artifacts.live import LiveOutput
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.errors import ArtifactError
from batchpilot.settings import Settings
from batchpilot.steps.base import StepContext, StepResult
from batchpilot.store import RunStore

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
BATCHES = 5
ROWS_PER_BATCH = 1000


def batch(number: int) -> pa.RecordBatch:
    first = number * ROWS_PER_BATCH
    ids = list(range(first, first + ROWS_PER_BATCH))
    return pa.record_batch([pa.array(ids), pa.array([f"n{i}" for i in ids])], schema=SCHEMA)


def query(dsn: str, statement: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as pg:
        return pg.execute(statement).fetchall()


def wait_for_load(dsn: str, condition: str, what: str, timeout_s: float = 20.0) -> None:
    """Block until a batchpilot session on the server matches ``condition``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = query(
            dsn,
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE application_name = 'batchpilot' AND {condition}",
        )
        if found[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the load did not {what} while the extract ran")


def wait_for_copy(dsn: str) -> None:
    """Block until a batchpilot COPY runs (or ran) in an open transaction."""
    wait_for_load(dsn, "query LIKE 'COPY%'", "start its COPY")


class SlowExtract:
    """A task that writes its output batch by batch; before the last batch it checks
    that the load is copying and that nothing is visible yet. ``fail_on`` attempts
    raise after four batches."""

    def __init__(self, dsn: str, *, fail_on: tuple[int, ...] = ()) -> None:
        self.dsn = dsn
        self.fail_on = fail_on
        self.seen_while_running: list[int] = []

    def __call__(self, context: StepContext) -> StepResult:
        def batches() -> Iterator[pa.RecordBatch]:
            for number in range(BATCHES - 1):
                yield batch(number)
            wait_for_copy(self.dsn)
            visible = query(
                self.dsn,
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'people'",
            )
            self.seen_while_running.append(visible[0][0])
            if context.attempt in self.fail_on:
                raise ValueError("the source went away")
            yield batch(BATCHES - 1)

        ref = context.write_output_batches(SCHEMA, batches())
        return StepResult(output=ref, rows_out=ref.rows)


def pipeline_with(extract: SlowExtract, *, retries: int = 0) -> Pipeline:
    pipeline = Pipeline("early")
    pipeline.add_tasks(
        [
            Task("extract", run=extract, retries=retries, retry_delay=0),
            Task(
                "load",
                type="load.postgres",
                config={"connection": "dwh", "table": "people", "mode": "append"},
            ).depends_on("extract"),
        ]
    )
    return pipeline


@pytest.fixture
def pg_settings(settings: Settings, pg_url: str) -> Settings:
    return dataclasses.replace(
        settings, connections=ConnectionRegistry([Connection("dwh", pg_url)])
    )


def early_logs(settings: Settings, run_id: str) -> list[Path]:
    return sorted((settings.runs_dir / run_id / "logs").glob("*.early-*"))


def test_the_load_copies_while_the_extract_writes_and_commits_after_it(
    pg_settings: Settings, pg_dsn: str
):
    extract = SlowExtract(pg_dsn)

    result = pipeline_with(extract).run(settings=pg_settings)

    assert result.status is RunStatus.SUCCESS, result.tasks
    # the COPY ran before the extract's last batch, and its table was not yet visible
    assert extract.seen_while_running == [0]
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT id) FROM people") == [(5000, 5000)]
    assert result.tasks["load"].rows_in == result.tasks["load"].rows_out == 5000
    assert result.tasks["load"].attempts == 1
    # in the store, the load started only once the extract had ended
    store = RunStore.for_home(pg_settings.home, pg_settings.database_url)
    (extracted,) = store.get_attempts(result.run_id, "extract")
    (loaded,) = store.get_attempts(result.run_id, "load")
    assert extracted.ended_at is not None and loaded.started_at >= extracted.ended_at
    log = Path(loaded.log_path).read_text()
    assert "started early, while 'extract' runs" in log
    assert "loaded 5000 rows" in log
    assert early_logs(pg_settings, result.run_id) == []


def test_a_load_that_copied_everything_waits_for_the_extract_to_succeed(
    pg_settings: Settings, pg_dsn: str
):
    seen: list[tuple] = []

    def extract(context: StepContext) -> StepResult:
        ref = context.write_output_batches(SCHEMA, (batch(n) for n in range(BATCHES)))
        # the output is whole: the load copies it all, then waits in its open transaction
        # (idle, its last statement the COPY) until this task has succeeded
        wait_for_load(
            pg_dsn,
            "state = 'idle in transaction' AND query LIKE 'COPY%'",
            "finish its COPY and wait",
        )
        seen.append(query(pg_dsn, "SELECT to_regclass('people') IS NULL")[0])
        return StepResult(output=ref, rows_out=ref.rows)

    pipeline = Pipeline("early")
    pipeline.add_tasks(
        [
            Task("extract", run=extract),
            Task(
                "load",
                type="load.postgres",
                config={"connection": "dwh", "table": "people", "mode": "append"},
            ).depends_on("extract"),
        ]
    )

    result = pipeline.run(settings=pg_settings)

    assert result.status is RunStatus.SUCCESS, result.tasks
    assert seen == [(True,)]  # nothing was visible while the extract still ran
    assert query(pg_dsn, "SELECT count(*) FROM people") == [(BATCHES * ROWS_PER_BATCH,)]
    store = RunStore.for_home(pg_settings.home, pg_settings.database_url)
    (loaded,) = store.get_attempts(result.run_id, "load")
    assert "the task starts: its upstream succeeded (waited" in Path(loaded.log_path).read_text()


def test_when_the_extract_fails_the_early_load_leaves_no_trace(pg_settings: Settings, pg_dsn: str):
    extract = SlowExtract(pg_dsn, fail_on=(1,))

    result = pipeline_with(extract).run(settings=pg_settings)

    assert result.status is RunStatus.FAILED
    assert result.tasks["extract"].state is TaskState.FAILED
    load = result.tasks["load"]
    assert load.state is TaskState.SKIPPED and load.attempts == 0
    # the COPY's transaction was rolled back: no table, no record of a load
    assert query(pg_dsn, "SELECT to_regclass('people')") == [(None,)]
    assert query(pg_dsn, "SELECT count(*) FROM batchpilot_loads") == [(0,)]
    store = RunStore.for_home(pg_settings.home, pg_settings.database_url)
    assert store.get_attempts(result.run_id, "load") == []
    assert early_logs(pg_settings, result.run_id) == []


def test_an_extract_retried_after_failing_midway_is_loaded_once(pg_settings: Settings, pg_dsn: str):
    extract = SlowExtract(pg_dsn, fail_on=(1,))

    result = pipeline_with(extract, retries=1).run(settings=pg_settings)

    assert result.status is RunStatus.SUCCESS, result.tasks
    assert result.tasks["extract"].attempts == 2
    assert result.tasks["load"].attempts == 1
    # each attempt of the extract had a COPY following it; only the second committed
    assert extract.seen_while_running == [0, 0]
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT id) FROM people") == [(5000, 5000)]
    assert query(pg_dsn, "SELECT task_id, rows FROM batchpilot_loads") == [("load", 5000)]


def test_with_one_worker_the_load_waits_for_the_extract(pg_settings: Settings, pg_dsn: str):
    pipeline = Pipeline("early")
    pipeline.add_tasks(
        [
            Task("extract", run=lambda: pa.table({"id": [1, 2]})),
            Task(
                "load",
                type="load.postgres",
                config={"connection": "dwh", "table": "people", "mode": "append"},
            ).depends_on("extract"),
        ]
    )

    result = pipeline.run(settings=pg_settings, workers=1)

    assert result.status is RunStatus.SUCCESS
    store = RunStore.for_home(pg_settings.home, pg_settings.database_url)
    (loaded,) = store.get_attempts(result.run_id, "load")
    assert "started early" not in Path(loaded.log_path).read_text()
    assert query(pg_dsn, "SELECT count(*) FROM people") == [(2,)]


# -- LiveOutput on its own ---------------------------------------------------------------------


def write_slowly(store: ArtifactStore, live: LiveOutput, *, fail: bool = False) -> threading.Thread:
    def batches() -> Iterator[pa.RecordBatch]:
        for number in range(3):
            time.sleep(0.05)
            yield batch(number)
        if fail:
            raise ValueError("broken")

    def write() -> None:
        with contextlib.suppress(ValueError):  # write_batches abandoned the output
            live.finish(store.write_batches("up", SCHEMA, batches(), live=live))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_follower_reads_every_batch_as_it_is_written(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    live = LiveOutput("up")
    writer = write_slowly(store, live)

    followed = live.follow(threading.Event())
    assert followed is not None
    schema, batches = followed
    received = [(b.num_rows, writer.is_alive()) for b in batches]
    writer.join()

    assert schema == SCHEMA
    assert [rows for rows, _ in received] == [ROWS_PER_BATCH] * 3
    assert received[0][1] is True  # the first batch arrived while the writer still wrote
    assert read_table(store.path_for("up")).num_rows == 3 * ROWS_PER_BATCH


def test_a_follower_of_an_abandoned_output_gets_an_error(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    live = LiveOutput("up")
    writer = write_slowly(store, live, fail=True)

    followed = live.follow(threading.Event())
    assert followed is not None
    with pytest.raises(ArtifactError, match="abandoned"):
        for _ in followed[1]:
            pass
    writer.join()


def test_an_output_written_without_streaming_is_read_once_finished(tmp_path: Path):
    elsewhere = ArtifactStore(tmp_path)  # written without announcing it
    ref = elsewhere.write_table("up", pa.Table.from_batches([batch(0)]))
    live = LiveOutput("up")
    threading.Timer(0.05, live.finish, args=(ref,)).start()

    followed = live.follow(threading.Event())

    assert followed is not None
    assert sum(b.num_rows for b in followed[1]) == ROWS_PER_BATCH


def test_a_task_that_wrote_no_output_gives_its_follower_none():
    live = LiveOutput("up")
    live.finish(None)
    assert live.follow(threading.Event()) is None


def test_a_cancelled_follower_stops_waiting():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ArtifactError, match="stopped"):
        LiveOutput("up").follow(cancel)


def test_a_follower_that_comes_after_the_writer_finished_reads_the_whole_file(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    live = LiveOutput("up")
    store.write_batches("up", SCHEMA, [batch(0), batch(1)], live=live)  # not ended yet

    followed = live.follow(threading.Event())

    assert followed is not None
    assert sum(b.num_rows for b in followed[1]) == 2 * ROWS_PER_BATCH
