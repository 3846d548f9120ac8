"""Triggers: the pipeline file's ``triggers:``, the pure decisions (which files are stable and
new, which upstream runs qualify) and one pass of :func:`run_trigger_tick` on a real store."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchpilot.clock import FakeClock
from batchpilot.errors import SpecErrors
from batchpilot.scheduler.catalog import PipelineCatalog
from batchpilot.scheduler.triggers import (
    SeenFile,
    TriggerWatches,
    observe_files,
    qualifying_runs,
    run_trigger_tick,
    stable_files,
    unfired,
)
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.serialize import spec_to_document
from batchpilot.spec.triggers import (
    TRIGGER_PARAM,
    AfterTrigger,
    FileTrigger,
    UpstreamStatus,
    trigger_graph_errors,
)
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunStore, RunSummaryRecord
from tests.scheduler.conftest import write_pipeline

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def pipeline(triggers: Any, name: str = "loader", **extra: Any):
    document = {"name": name, "triggers": triggers, "nodes": [{"id": "noop", "type": "empty"}]}
    return build_pipeline({**document, **extra}, source_path=f"/p/{name}.yaml")


# -- the spec ----------------------------------------------------------------------------------


def test_triggers_are_read_with_their_defaults_and_written_back_the_same():
    spec = pipeline(
        [
            {"file": {"path": "/data/in/users_*.xlsx", "stable_for": "5s", "batch": False}},
            {"file": {"path": "/data/in/*.csv"}},
            {"after": {"pipeline": "daily_customers", "status": "failed"}},
            {"after": {"pipeline": "daily_orders"}},
        ]
    )
    assert spec.triggers == (
        FileTrigger("/data/in/users_*.xlsx", 5.0, False),
        FileTrigger("/data/in/*.csv", 5.0, False),
        AfterTrigger("daily_customers", UpstreamStatus.FAILED),
        AfterTrigger("daily_orders", UpstreamStatus.SUCCESS),
    )
    assert build_pipeline(spec_to_document(spec)).triggers == spec.triggers


@pytest.mark.parametrize(
    ("trigger", "field", "says"),
    [
        ({"file": {"path": "in/*.csv"}}, "triggers[0].file.path", "absolute path"),
        ({"file": {"path": ""}}, "triggers[0].file.path", "non-empty absolute glob"),
        ({"file": {"path": "/in/*", "stable_for": "soon"}}, "triggers[0].file.stable_for", "soon"),
        ({"file": {"path": "/in/*", "stable_for": "2h"}}, "triggers[0].file.stable_for", "3600"),
        ({"file": {"path": "/in/*", "batch": "yes"}}, "triggers[0].file.batch", "'yes'"),
        ({"file": {"path": "/in/*", "glob": 1}}, "triggers[0].file.glob", "unknown field"),
        ({"after": {"pipeline": "x", "status": "ok"}}, "triggers[0].after.status", "'ok'"),
        ({"after": {"status": "any"}}, "triggers[0].after.pipeline", "pipeline name"),
        ({"cron": "0 * * * *"}, "triggers[0].cron", "unknown trigger"),
    ],
)
def test_a_bad_trigger_names_the_file_the_field_and_the_value(trigger, field, says):
    with pytest.raises(SpecErrors) as caught:
        pipeline([trigger])
    (error,) = caught.value.errors
    assert error.field == field and says in str(error)
    assert "/p/loader.yaml" in str(error)


def test_an_after_trigger_on_an_unknown_pipeline_or_in_a_cycle_is_refused_by_name():
    errors = trigger_graph_errors(
        {
            "a": [AfterTrigger("b")],
            "b": [AfterTrigger("a")],
            "c": [AfterTrigger("missing")],
            "d": [AfterTrigger("c")],
        },
        {"a": "/p/a.yaml", "c": "/p/c.yaml"},
    )
    assert sorted(errors) == ["a", "b", "c"]
    assert "cycle (a -> b -> a)" in errors["a"] and "/p/a.yaml" in errors["a"]
    assert "no pipeline named 'missing'" in errors["c"]


# -- the decisions -----------------------------------------------------------------------------


def test_a_file_is_stable_once_unchanged_for_stable_for_and_a_change_restarts_the_wait():
    growing = SeenFile("/in/a.csv", 10, 1)
    watched = observe_files({}, [growing], T0)
    assert stable_files(watched, T0 + timedelta(seconds=4), 5.0) == []
    grown = SeenFile("/in/a.csv", 20, 2)
    watched = observe_files(watched, [grown], T0 + timedelta(seconds=4))
    assert stable_files(watched, T0 + timedelta(seconds=8), 5.0) == []
    watched = observe_files(watched, [grown], T0 + timedelta(seconds=9))
    assert stable_files(watched, T0 + timedelta(seconds=9), 5.0) == [grown]
    assert observe_files(watched, [], T0 + timedelta(seconds=10)) == {}


def test_only_files_never_fired_for_are_new():
    old, rewritten, fresh = (
        SeenFile("/in/a", 1, 1),
        SeenFile("/in/a", 2, 2),
        SeenFile("/in/b", 1, 1),
    )
    assert unfired([old, rewritten, fresh], {old.identity.key}) == [rewritten, fresh]


def upstream(run_id: str, status: RunStatus, ended: datetime | None) -> RunSummaryRecord:
    return RunSummaryRecord(
        **{
            **{f: None for f in RunSummaryRecord.__dataclass_fields__},
            "run_id": run_id,
            "pipeline": "daily_customers",
            "status": status,
            "ended_at": ended,
            "ds": "2026-02-28",
        }
    )


def test_only_upstream_runs_ended_with_the_status_since_the_trigger_was_armed_qualify():
    runs = [
        upstream("old", RunStatus.SUCCESS, T0 - timedelta(seconds=1)),
        upstream("ok2", RunStatus.SUCCESS, T0 + timedelta(minutes=2)),
        upstream("ok1", RunStatus.SUCCESS, T0 + timedelta(minutes=1)),
        upstream("bad", RunStatus.FAILED, T0 + timedelta(minutes=3)),
        upstream("stopped", RunStatus.CANCELLED, T0 + timedelta(minutes=4)),
    ]
    ids = lambda status: [r.run_id for r in qualifying_runs(runs, status, T0)]  # noqa: E731
    assert ids(UpstreamStatus.SUCCESS) == ["ok1", "ok2"]
    assert ids(UpstreamStatus.FAILED) == ["bad"]
    assert ids(UpstreamStatus.ANY) == ["ok1", "ok2", "bad"]


# -- one pass on a real store ------------------------------------------------------------------


def drop(folder: Path, name: str, text: str = "x") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_each_new_stable_file_starts_one_run_recording_its_path(state_store: RunStore, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    spec = pipeline([{"file": {"path": f"{inbox}/users_*.xlsx", "stable_for": "5s"}}])
    clock, watches = FakeClock(T0), TriggerWatches()
    first, second = drop(inbox, "users_1.xlsx"), drop(inbox, "users_2.xlsx")
    drop(inbox, "other.csv")
    assert run_trigger_tick([spec], state_store, clock, watches).created == []  # not stable yet
    clock.sleep(5)
    report = run_trigger_tick([spec], state_store, clock, watches)
    assert len(report.created) == 2
    runs = state_store.list_runs(pipeline="loader")
    payloads = sorted(r.params[TRIGGER_PARAM]["path"] for r in runs)
    assert payloads == [str(first), str(second)]
    assert {r.triggered_by for r in runs} == {RunTrigger.TRIGGER.value}
    assert {r.ds for r in runs} == {"2026-03-01"}
    clock.sleep(60)
    assert run_trigger_tick([spec], state_store, clock, TriggerWatches()).created == []
    third = drop(inbox, "users_3.xlsx")  # lands while the first runs are still queued
    run_trigger_tick([spec], state_store, clock, watches)
    clock.sleep(5)
    (run_id,) = run_trigger_tick([spec], state_store, clock, watches).created
    assert state_store.get_run(run_id).params[TRIGGER_PARAM]["paths"] == [str(third)]


def test_a_batch_trigger_starts_one_run_for_every_waiting_file(sqlite_store: RunStore, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    spec = pipeline([{"file": {"path": f"{inbox}/*.csv", "stable_for": 0, "batch": True}}])
    paths = [str(drop(inbox, f"{i}.csv")) for i in range(3)]
    (run_id,) = run_trigger_tick([spec], sqlite_store, FakeClock(T0), TriggerWatches()).created
    payload = sqlite_store.get_run(run_id).params[TRIGGER_PARAM]
    assert payload["paths"] == paths and payload["path"] == paths[0]


def end_run(store: RunStore, run_id: str, status: RunStatus, ds: str = "2026-02-28") -> None:
    store.create_run(
        run_id=run_id,
        pipeline="daily_customers",
        spec={},
        params={},
        ds=ds,
        source_path=None,
        task_ids=["a"],
    )
    store.set_run_status(run_id, RunStatus.RUNNING)
    store.set_run_status(run_id, status)


def test_an_upstream_success_starts_one_downstream_run_with_its_ds_across_restarts(
    state_store: RunStore,
):
    spec = pipeline([{"after": {"pipeline": "daily_customers", "status": "success"}}], "report")
    end_run(state_store, "before", RunStatus.SUCCESS)  # ended before the trigger was armed
    armed = datetime.now(UTC)
    assert run_trigger_tick([spec], state_store, FakeClock(armed), TriggerWatches()).created == []
    end_run(state_store, "up1", RunStatus.SUCCESS, ds="2026-02-27")
    end_run(state_store, "up2", RunStatus.FAILED)
    (run_id,) = run_trigger_tick([spec], state_store, FakeClock(armed), TriggerWatches()).created
    run = state_store.get_run(run_id)
    assert run.ds == "2026-02-27" and run.triggered_by == RunTrigger.UPSTREAM.value
    assert run.params[TRIGGER_PARAM]["run_id"] == "up1"
    restarted = RunStore(state_store.url)
    try:
        later = FakeClock(armed + timedelta(hours=1))
        assert run_trigger_tick([spec], restarted, later, TriggerWatches()).created == []
    finally:
        restarted.dispose()


def test_the_catalog_refuses_an_after_trigger_on_an_unknown_pipeline_and_a_cycle(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "a", triggers=[{"after": {"pipeline": "b"}}])
    write_pipeline(folder, "b", triggers=[{"after": {"pipeline": "a"}}])
    write_pipeline(folder, "c", triggers=[{"after": {"pipeline": "nope"}}])
    write_pipeline(folder, "d", triggers=[{"after": {"pipeline": "daily"}}])
    write_pipeline(folder, "daily")
    catalog = PipelineCatalog(folder, settings=Settings(home=tmp_path / "home"))
    catalog.refresh()
    errors = {e.name: e.error for e in catalog.entries()}
    assert "cycle" in errors["a"] and "cycle" in errors["b"]
    assert "no pipeline named 'nope'" in errors["c"] and str(folder / "c.yaml") in errors["c"]
    assert errors["d"] is None and errors["daily"] is None
    assert [s.name for s in catalog.triggered()] == ["d"]


def test_validate_dir_refuses_an_after_trigger_on_a_pipeline_not_in_the_folder(cli, tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "report", triggers=[{"after": {"pipeline": "missing"}}])
    write_pipeline(folder, "daily", triggers=[{"file": {"path": "/data/in/*.csv"}}])
    result = cli("validate", str(folder))
    assert result.code == 2
    assert "triggers.after.pipeline" in result.stdout and "'missing'" in result.stdout
    assert "ok      " in result.stdout and "1 valid, 1 invalid" in result.stdout
    assert sorted(os.listdir(folder)) == ["daily.yaml", "report.yaml"]


def test_validate_and_run_refuse_a_bad_trigger_with_exit_2_and_record_nothing(cli, tmp_path, home):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    path = write_pipeline(
        folder, "loader", triggers=[{"file": {"path": "/data/in/*.csv", "stable_for": "often"}}]
    )
    for command in ("validate", "run"):
        result = cli(command, str(path))
        assert result.code == 2, result.stderr
        shown = result.stdout + result.stderr
        assert "triggers[0].file.stable_for" in shown and "'often'" in shown
        assert "Traceback" not in shown
    store = RunStore.for_home(home)
    try:
        assert store.list_runs() == []
    finally:
        store.dispose()


def test_pipelines_list_shows_an_after_trigger_on_an_unknown_pipeline(cli_in_process, tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "report", triggers=[{"after": {"pipeline": "daily_customer"}}])
    write_pipeline(folder, "daily_customers")
    listed = cli_in_process("pipelines", "list", "--pipelines", str(folder), "-o", "json")
    assert listed.code == 0, listed.stderr
    rows = {row["name"]: row for row in listed.json()}
    (error,) = rows["report"]["errors"]
    assert "triggers.after.pipeline" in error and "'daily_customer'" in error
    assert "daily_customers" in error  # the known names, to spot the typo
    assert rows["daily_customers"]["errors"] == []
