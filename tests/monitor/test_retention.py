"""Retention: which runs a clean takes, one transaction per run's rows, files first then
rows, and a dry run that counts exactly what a clean then deletes; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from batchpilot.engine import RunService
from batchpilot.errors import RetentionError, RunNotFound
from batchpilot.monitor.retention import (
    FileCounts,
    LocalRunFolders,
    RetentionPolicy,
    clean_runs,
    default_deleters,
)
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, RunTrigger, TaskState
from batchpilot.store import CallbackRecord, RunStore, utcnow
from batchpilot.store.run_rows import NewRun
from batchpilot.store.run_timings import RunTiming
from batchpilot.store.tables import run_specs

LATER = timedelta(days=31)


def make_run(
    store: RunStore,
    run_id: str,
    status: RunStatus,
    *,
    pipeline: str = "p",
    needs_attention: bool = False,
) -> None:
    store.create_run(
        run_id=run_id,
        pipeline=pipeline,
        spec={"name": pipeline},
        params={},
        ds="2026-01-02",
        source_path=None,
        task_ids=["a", "b"],
    )
    if status is not RunStatus.QUEUED:
        store.set_run_status(run_id, RunStatus.RUNNING)
    if status.is_terminal():
        store.set_run_status(run_id, status, needs_attention=needs_attention)


def ids(runs: list[RunTiming]) -> list[str]:
    return [r.run_id for r in runs]


# -- the store ---------------------------------------------------------------------------


def test_only_ended_runs_that_need_no_attention_are_taken_unless_forced(store: RunStore):
    make_run(store, "ok", RunStatus.SUCCESS)
    make_run(store, "bad", RunStatus.FAILED)
    make_run(store, "stopped", RunStatus.CANCELLED)
    make_run(store, "broken", RunStatus.FAILED, needs_attention=True)
    make_run(store, "busy", RunStatus.RUNNING)
    make_run(store, "waiting", RunStatus.QUEUED)
    later = utcnow() + timedelta(seconds=1)

    assert ids(store.retention_candidates(ended_before=later)) == ["ok", "bad", "stopped"]
    assert ids(store.retention_candidates(ended_before=later, force=True)) == [
        "ok",
        "bad",
        "stopped",
        "broken",
        "busy",
        "waiting",
    ]
    earlier = utcnow() - timedelta(days=1)
    assert store.retention_candidates(ended_before=earlier, force=True) == []


def test_keep_last_keeps_each_pipelines_newest_ended_runs(store: RunStore):
    for i in range(4):
        make_run(store, f"p-{i}", RunStatus.SUCCESS, pipeline="p")
    make_run(store, "q-0", RunStatus.FAILED, pipeline="q")
    make_run(store, "p-running", RunStatus.RUNNING, pipeline="p")  # kept anyway, not counted
    make_run(store, "p-broken", RunStatus.FAILED, pipeline="p", needs_attention=True)
    later = utcnow() + timedelta(seconds=1)
    assert ids(store.retention_candidates(ended_before=later, keep_last=2)) == ["p-0", "p-1"]
    assert ids(store.retention_candidates(ended_before=later, keep_last=1)) == [
        "p-0",
        "p-1",
        "p-2",
    ]


def test_a_runs_rows_go_in_one_transaction_and_ledgers_stay(store: RunStore):
    slot = datetime(2026, 1, 2, 6, tzinfo=UTC)
    claim = store.schedules.claim_slot(
        NewRun(
            run_id="sched",
            pipeline="p",
            spec={"name": "p"},
            params={},
            ds="2026-01-02",
            source_path=None,
            task_ids=["a", "b"],
            slot=slot,
            triggered_by=RunTrigger.SCHEDULE,
        )
    )
    assert claim.created
    store.start_attempt("sched", "a", 1, log_path="/logs/a.1")
    store.finish_attempt("sched", "a", 1, state=TaskState.SUCCESS)
    store.add_callbacks("sched", [CallbackRecord("cb-1", "a", "on_success", {"x": 1})])
    store.set_run_status("sched", RunStatus.SUCCESS)

    rows = {
        "runs": 1,
        "tasks": 2,
        "attempts": 1,
        "callbacks": 1,
        "server_sessions": 0,
        "idempotency_keys": 0,
        "monitored_runs": 0,
    }
    assert store.count_run_rows("sched").to_dict() == rows
    deleted = store.delete_run_rows("sched")
    assert deleted is not None and deleted.to_dict() == rows  # it deletes what it counted
    with pytest.raises(RunNotFound):
        store.get_run("sched")
    assert store.get_tasks("sched") == [] and store.get_attempts("sched") == []
    with store.engine.connect() as conn:  # its pipeline went with it (a foreign key's cascade)
        assert conn.execute(select(func.count()).select_from(run_specs)).scalar_one() == 0
    # the slot stays claimed: purging history must not make it due again
    again = store.schedules.claim_slot(
        NewRun(
            run_id="sched-2",
            pipeline="p",
            spec={},
            params={},
            ds="2026-01-02",
            source_path=None,
            task_ids=[],
            slot=slot,
            triggered_by=RunTrigger.SCHEDULE,
        )
    )
    assert not again.created


def test_a_run_retried_after_it_was_chosen_keeps_every_row(store: RunStore):
    make_run(store, "old", RunStatus.FAILED)
    (chosen,) = store.retention_candidates(ended_before=utcnow() + timedelta(seconds=1))
    store.set_run_status(chosen.run_id, RunStatus.RUNNING)  # `batchpilot retry` meanwhile
    assert store.delete_run_rows("old") is None
    assert store.get_run("old").status is RunStatus.RUNNING
    assert len(store.get_tasks("old")) == 2
    assert store.delete_run_rows("old", force=True) is not None


# -- clean_runs: real runs, real files ----------------------------------------------------


def run_folder(settings: Settings, run_id: str) -> Path:
    return settings.runs_dir / run_id


def test_a_dry_run_counts_what_the_clean_then_deletes(
    service: RunService,
    store: RunStore,
    settings: Settings,
    csv_pipeline: Callable[..., PipelineSpec],
):
    old = [
        service.start(csv_pipeline("daily", rows=3)).run_id,
        service.start(csv_pipeline("daily", rows=4)).run_id,
        service.start(csv_pipeline("hourly", fail=True)).run_id,
    ]
    kept = [  # the newest run of each pipeline
        service.start(csv_pipeline("daily", rows=5)).run_id,
        service.start(csv_pipeline("hourly", rows=1)).run_id,
    ]
    make_run(store, "busy", RunStatus.RUNNING, pipeline="daily")
    make_run(store, "broken", RunStatus.FAILED, pipeline="daily", needs_attention=True)
    for run_id in old + kept:
        assert (run_folder(settings, run_id) / "logs").is_dir()
    policy = RetentionPolicy(timedelta(days=30), keep_last=1)
    deleters = default_deleters(settings)
    now = utcnow() + LATER

    preview = clean_runs(store, policy, deleters=deleters, now=now, dry_run=True)
    assert ids(preview.runs) == old
    for run_id in old:
        assert store.get_run(run_id)  # a dry run deletes nothing
        assert run_folder(settings, run_id).is_dir()

    done = clean_runs(store, policy, deleters=deleters, now=now)

    assert ids(done.runs) == ids(preview.runs)
    assert done.rows == preview.rows
    assert done.files == preview.files
    assert done.rows.to_dict()["runs"] == 3 and done.rows.to_dict()["tasks"] == 6
    assert done.files["local"].files > 0 and done.files["local"].bytes > 0
    for run_id in old:
        with pytest.raises(RunNotFound):
            store.get_run(run_id)
        assert not run_folder(settings, run_id).exists()
    for run_id in kept:
        assert store.get_run(run_id).status is RunStatus.SUCCESS
        assert run_folder(settings, run_id).is_dir()
    assert store.get_run("busy").status is RunStatus.RUNNING
    assert store.get_run("broken").needs_attention
    assert done.skipped == []
    again = clean_runs(store, policy, deleters=deleters, now=now, dry_run=True)
    assert again.runs == [] and again.rows.to_dict()["runs"] == 0


def test_a_clean_killed_after_the_files_finishes_on_the_next_clean(
    service: RunService,
    store: RunStore,
    settings: Settings,
    csv_pipeline: Callable[..., PipelineSpec],
):
    run_id = service.start(csv_pipeline("daily")).run_id
    deleters = default_deleters(settings)
    run = store.retention_candidates(ended_before=utcnow() + LATER)[0]
    for deleter in deleters:  # what a clean does first, then the process is killed
        deleter.delete(run)
    assert store.get_run(run_id)  # rows point at deleted files: still old and eligible

    done = clean_runs(
        store, RetentionPolicy(timedelta(days=30)), deleters=deleters, now=utcnow() + LATER
    )
    assert ids(done.runs) == [run_id]
    assert done.files == {"local": FileCounts(0, 0)}
    with pytest.raises(RunNotFound):
        store.get_run(run_id)


class FolderBucket:
    """A second deleter, as remote log storage adds one: a run's objects under a prefix."""

    name = "remote"

    def __init__(self, root: Path, *, refuse: str | None = None) -> None:
        self.root = root
        self.refuse = refuse

    def measure(self, run: RunTiming) -> FileCounts:
        files = list((self.root / run.run_id).glob("*"))
        return FileCounts(len(files), sum(f.stat().st_size for f in files))

    def delete(self, run: RunTiming) -> FileCounts:
        if run.run_id == self.refuse:
            raise RetentionError(f"bucket refused {run.run_id}", run_id=run.run_id)
        found = self.measure(run)
        for f in (self.root / run.run_id).glob("*"):
            f.unlink()
        return found


def test_files_a_deleter_cannot_delete_keep_their_runs_rows_until_a_later_clean(
    service: RunService,
    store: RunStore,
    settings: Settings,
    tmp_path: Path,
    csv_pipeline: Callable[..., PipelineSpec],
):
    first = service.start(csv_pipeline("daily")).run_id
    second = service.start(csv_pipeline("daily")).run_id
    bucket = tmp_path / "bucket"
    for run_id in (first, second):
        (bucket / run_id).mkdir(parents=True)
        (bucket / run_id / "load.attempt-1.log").write_text("12345")
    policy = RetentionPolicy(timedelta(days=30))
    now = utcnow() + LATER
    failing = [LocalRunFolders(settings.runs_dir), FolderBucket(bucket, refuse=second)]

    with pytest.raises(RetentionError, match=second):
        clean_runs(store, policy, deleters=failing, now=now)
    with pytest.raises(RunNotFound):
        store.get_run(first)  # deleted before the failure
    assert store.get_run(second)  # its rows stay: the next clean finds it again

    working = [LocalRunFolders(settings.runs_dir), FolderBucket(bucket)]
    done = clean_runs(store, policy, deleters=working, now=now)
    assert ids(done.runs) == [second]
    assert done.files["remote"] == FileCounts(1, 5)
    assert list(bucket.rglob("*.log")) == []


def test_the_local_deleter_never_leaves_the_runs_folder(tmp_path: Path):
    runs_dir = tmp_path / "runs"
    (runs_dir / "x").mkdir(parents=True)
    deleter = LocalRunFolders(runs_dir)

    def timing(run_id: str) -> RunTiming:
        return RunTiming(run_id, "p", RunStatus.SUCCESS, "manual", utcnow(), None, None, None)

    for bad in ("..", ".", "", "../x", "a/b"):
        assert deleter.folder(timing(bad)) is None
        assert deleter.delete(timing(bad)) == FileCounts()
    assert runs_dir.is_dir()
