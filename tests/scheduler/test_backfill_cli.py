"""``batchpilot backfill`` as users run it: real worker processes, real signals, real store.

Each slot's python step reads a plan file (``{ds: seconds to sleep | "fail" |
{"wait_for": path} | {"touch": path}}``), so a test decides which slot is slow, which
fails, and which waits for another slot to have started (an event, not a timing bet).
Backfill processes run in their own process group and are always killed at the end,
with any worker still running.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpilot.engine.queued import queued_run
from batchpilot.pipeline import load_pipeline
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunRecord, RunStore
from batchpilot.store.backfills import BackfillStore
from tests.cli_processes import CliProcess, CliProcesses
from tests.cli_runner import Cli
from tests.scheduler.conftest import write_pipeline

WAIT_S = 60.0

PLANNED_STEP = '''
import json
import time
from pathlib import Path


def planned(ds: str, plan: str) -> None:
    """Does what the plan says for this date: sleep, fail, wait for a file, create one."""
    what = json.loads(Path(plan).read_text()).get(ds, 0)
    if what == "fail":
        raise RuntimeError(f"planned failure on {ds}")
    if isinstance(what, dict) and "touch" in what:
        Path(what["touch"]).touch()
    elif isinstance(what, dict) and "wait_for" in what:
        deadline = time.monotonic() + 120
        while not Path(what["wait_for"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ds}: {what['wait_for']} never appeared")
            time.sleep(0.1)
    else:
        time.sleep(float(what))
'''


def daily_pipeline(tmp_path: Path, plan: dict[str, object], schedule: object = "0 2 * * *") -> Path:
    """A folder with pipeline ``daily`` (one python step that follows ``plan``)."""
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    (folder / "planned_steps.py").write_text(PLANNED_STEP)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    node = {
        "id": "work",
        "type": "python",
        "config": {
            "callable": "planned_steps:planned",
            "kwargs": {"ds": "{{ ds }}", "plan": str(plan_file)},
        },
    }
    write_pipeline(folder, "daily", schedule, nodes=[node])
    return folder


def runs_of(home: Path) -> list[RunRecord]:
    store = RunStore.for_home(home)
    try:
        return sorted(store.list_runs(limit=500, pipeline="daily"), key=lambda r: r.slot)
    finally:
        store.dispose()


def backfill_count(home: Path) -> int:
    store = RunStore.for_home(home)
    try:
        return len(BackfillStore(store.engine).list(limit=100))
    finally:
        store.dispose()


@pytest.fixture
def background(cli_processes: CliProcesses) -> Callable[[list[str]], CliProcess]:
    """Starts ``backfill`` processes (killed at the end, with every worker still running)."""
    return lambda args: cli_processes("backfill", *args)


def test_dry_run_lists_each_slot_and_records_nothing(cli_in_process: Cli, tmp_path, home):
    folder = daily_pipeline(tmp_path, {})
    result = cli_in_process(
        "backfill", "daily", "--pipelines", str(folder), "--start", "2024-01-01",
        "--end", "2024-01-06", "--dry-run", "--reverse", "-o", "json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    listed = result.json()
    assert listed["dry_run"] is True
    assert [s["ds"] for s in listed["slots"]] == [f"2024-01-0{d}" for d in range(6, 0, -1)]
    assert {s["action"] for s in listed["slots"]} == {"run"}
    assert runs_of(home) == [] and backfill_count(home) == 0
    text = cli_in_process(
        "backfill", "daily", "--pipelines", str(folder), "--start", "2024-01-01",
        "--end", "2024-01-02", "--dry-run",
    )  # fmt: skip
    assert text.code == 0 and "2024-01-02 02:00 UTC" in text.stdout
    assert "nothing was run" in text.stdout


def test_six_slots_at_concurrency_2_run_once_each_in_a_sliding_window(
    cli: Cli, cli_in_process: Cli, tmp_path, home
):
    # the first slot runs until the third has started: with a sliding window the third
    # starts as soon as the second ends; a batch-of-2 window would never start it
    third_started = tmp_path / "third-started"
    plan = {
        "2024-01-01": {"wait_for": str(third_started)},
        "2024-01-03": {"touch": str(third_started)},
    }
    folder = daily_pipeline(tmp_path, plan)
    args = ["daily", "--pipelines", str(folder), "--start", "2024-01-01", "--end", "2024-01-06"]
    assert cli_in_process("pause", "daily", "--pipelines", str(folder)).code == 0
    result = cli("backfill", *args, "--concurrency", "2", "-o", "json")  # paused: runs anyway
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["status"] == "succeeded" and report["counts"]["succeeded"] == 6
    runs = runs_of(home)
    assert len(runs) == 6 and len({r.slot for r in runs}) == 6
    assert {r.triggered_by for r in runs} == {"backfill"}
    assert [s["run_id"] for s in report["slots"]] == [r.run_id for r in runs]
    slow, *others = runs
    started_while_slow_ran = [r for r in others if r.started_at < slow.ended_at]
    assert started_while_slow_ran[1:]  # slot 3 did not wait for the end of slot 1's "batch"
    # never more than 2 at once
    events = sorted([(r.started_at, 1) for r in runs] + [(r.ended_at, -1) for r in runs])
    in_flight = 0
    for _, change in events:
        in_flight += change
        assert in_flight <= 2

    again = cli_in_process("backfill", *args, "-o", "json")  # nothing to run: in this process
    assert again.code == 0, again.stderr
    assert again.json()["counts"]["skipped"] == 6
    assert [r.run_id for r in runs_of(home)] == [r.run_id for r in runs]


def test_a_failing_slot_exits_1_and_rerun_failed_runs_only_that_slot(
    cli: Cli, cli_in_process: Cli, tmp_path, home
):
    folder = daily_pipeline(tmp_path, {"2024-01-02": "fail"})
    args = ["daily", "--pipelines", str(folder), "--start", "2024-01-01", "--end", "2024-01-03"]
    result = cli("backfill", *args, "--concurrency", "3")
    assert result.code == 1, result.stderr
    assert "2 succeeded, 1 failed" in result.stdout and "backfill failed" in result.stdout
    first = {r.ds: r for r in runs_of(home)}
    assert first["2024-01-02"].status is RunStatus.FAILED

    (tmp_path / "plan.json").write_text("{}")  # the bug is fixed
    none = cli_in_process("backfill", *args, "--rerun", "none", "-o", "json")
    assert none.code == 1 and none.json()["counts"]["skipped"] == 3
    assert len(runs_of(home)) == 3

    rerun = cli("backfill", *args, "-o", "json")  # --rerun failed is the default
    assert rerun.code == 0, rerun.stderr
    after = {r.run_id: r for r in runs_of(home)}
    assert len(after) == 4  # one new run, for the failed slot only
    new = [r for r in after.values() if r.run_id not in {r.run_id for r in first.values()}]
    assert [(r.ds, r.status) for r in new] == [("2024-01-02", RunStatus.SUCCESS)]
    actions = {s["ds"]: s["action"] for s in rerun.json()["slots"]}
    assert actions == {"2024-01-01": "skip", "2024-01-02": "rerun", "2024-01-03": "skip"}


def test_killed_mid_way_then_run_again_continues_with_no_new_run_for_done_slots(
    cli: Cli, background, tmp_path, home
):
    folder = daily_pipeline(tmp_path, {"2024-01-03": 3, "2024-01-04": 3})
    args = ["daily", "--pipelines", str(folder), "--start", "2024-01-01", "--end", "2024-01-05"]
    first = background([*args, "--concurrency", "2"])

    def third_slot_running() -> bool:
        return any(r.ds == "2024-01-03" and r.status is RunStatus.RUNNING for r in runs_of(home))

    first.wait_for(third_slot_running, "the third slot's run", WAIT_S)
    os.kill(first.process.pid, signal.SIGKILL)  # the backfill alone; its workers live on
    first.process.wait(timeout=30)
    before = {r.ds: r for r in runs_of(home)}
    done = {ds for ds, r in before.items() if r.status is RunStatus.SUCCESS}
    assert {"2024-01-01", "2024-01-02"} <= done

    again = cli("backfill", *args, "--concurrency", "2", "-o", "json")
    assert again.code == 0, again.stderr
    report = again.json()
    assert report["continued"] is True and report["status"] == "succeeded"
    after = runs_of(home)
    assert len(after) == 5 and {r.ds for r in after} == {f"2024-01-0{d}" for d in range(1, 6)}
    for ds in done:  # 0 new runs for the slots already done
        assert next(r for r in after if r.ds == ds).run_id == before[ds].run_id
    for ds, run in before.items():  # runs left in flight were resumed, not doubled
        assert next(r for r in after if r.ds == ds).run_id == run.run_id
    assert all(r.status is RunStatus.SUCCESS for r in after)
    assert backfill_count(home) == 1


def test_interrupted_by_sigterm_then_continued_resumes_the_runs_it_stopped(
    cli: Cli, background, tmp_path, home
):
    folder = daily_pipeline(tmp_path, {"2024-01-01": 30, "2024-01-02": 30})
    args = ["daily", "--pipelines", str(folder), "--start", "2024-01-01", "--end", "2024-01-03"]
    first = background([*args, "--concurrency", "2"])

    def two_running() -> bool:
        return sum(r.status is RunStatus.RUNNING for r in runs_of(home)) == 2

    first.wait_for(two_running, "two running runs", WAIT_S)
    (tmp_path / "plan.json").write_text("{}")  # resumed, they return at once
    os.kill(first.process.pid, signal.SIGTERM)
    assert first.process.wait(timeout=WAIT_S) == 1
    assert "run the same command again to continue" in first.output()
    stopped = runs_of(home)
    assert [r.status for r in stopped] == [RunStatus.FAILED, RunStatus.FAILED]

    # even with --rerun none, the runs it stopped itself are resumed, not replaced
    again = cli("backfill", *args, "--rerun", "none", "-o", "json")
    assert again.code == 0, again.stderr
    assert [s["action"] for s in again.json()["slots"]] == ["resume", "resume", "run"]
    after = runs_of(home)
    assert [r.run_id for r in after[:2]] == [r.run_id for r in stopped]
    assert len(after) == 3 and all(r.status is RunStatus.SUCCESS for r in after)


def test_cancel_stops_a_running_backfill_and_leaves_no_run_open(
    cli: Cli, cli_in_process: Cli, background, tmp_path, home
):
    folder = daily_pipeline(tmp_path, {"2024-01-01": 120, "2024-01-02": 120, "2024-01-03": 120})
    args = ["daily", "--pipelines", str(folder), "--start", "2024-01-01", "--end", "2024-01-03"]
    running = background([*args, "--concurrency", "2"])

    def two_running() -> bool:
        return sum(r.status is RunStatus.RUNNING for r in runs_of(home)) == 2

    running.wait_for(two_running, "two running runs", WAIT_S)
    listed = cli_in_process("backfill", "list", "-o", "json")
    (backfill,) = listed.json()
    assert backfill["status"] == "running" and backfill["options"]["concurrency"] == 2

    cancelled = cli("backfill", "cancel", backfill["backfill_id"], "-o", "json")
    assert cancelled.code == 0, cancelled.stderr
    assert len(cancelled.json()["stopped"]) == 2
    assert running.process.wait(timeout=WAIT_S) == 1
    runs = runs_of(home)
    assert [r.status for r in runs] == [RunStatus.CANCELLED, RunStatus.CANCELLED]
    assert "2024-01-03" not in {r.ds for r in runs}  # the third slot never started
    assert cli_in_process("backfill", "list", "-o", "json").json()[0]["status"] == "cancelled"
    again = cli_in_process("backfill", "cancel", backfill["backfill_id"])
    assert again.code == 2 and "has ended" in again.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nosuch", "--start", "2024-01-01", "--end", "2024-01-02"], "no pipeline named 'nosuch'"),
        (["yearly", "--start", "2024-02-01", "--end", "2024-02-28"], "no slot of schedule"),
        (["daily", "--start", "2024-01-05", "--end", "2024-01-01"], "before it starts"),
        (["daily", "--start", "2024-01-01", "--end", "2024-01-02", "--every", "soon"], "--every"),
        (["daily", "--start", "2024-01-01", "--end", "2024-01-02", "--every", "0"], "--every"),
        (["daily", "--start", "2024-01-01", "--end", "2024-01-02", "--concurrency", "0"],
         "--concurrency"),
        (["daily", "--start", "January", "--end", "2024-01-02"], "--start takes a date"),
        (["daily", "--start", "2024-01-01", "--end", "2024-01-02", "--rerun", "some"], "--rerun"),
        (["unscheduled", "--start", "2024-01-01", "--end", "2024-01-02"], "--every 1d"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_what_to_fix_and_records_nothing(
    cli_in_process: Cli, tmp_path: Path, home: Path, arguments: list[str], message: str
):
    folder = daily_pipeline(tmp_path, {})
    write_pipeline(folder, "yearly", "0 2 1 1 *")
    write_pipeline(folder, "unscheduled")
    result = cli_in_process("backfill", *arguments, "--pipelines", str(folder))
    assert result.code == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert runs_of(home) == [] and backfill_count(home) == 0


def test_a_pipeline_file_path_and_every_replace_the_folder_and_schedule(
    cli_in_process: Cli, tmp_path: Path
):
    folder = daily_pipeline(tmp_path, {})
    path = write_pipeline(folder, "unscheduled")
    result = cli_in_process(
        "backfill", str(path), "--start", "2024-01-01", "--end", "2024-01-01T18:00",
        "--every", "6h", "--dry-run", "-o", "json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    slots = [s["slot"] for s in result.json()["slots"]]
    assert slots == [f"2024-01-01T{h:02d}:00:00+00:00" for h in (0, 6, 12, 18)]


def test_cancel_of_a_killed_backfill_cancels_the_run_it_left_queued(
    cli_in_process: Cli, tmp_path: Path, home: Path
):
    folder = daily_pipeline(tmp_path, {})
    spec = load_pipeline(folder / "daily.yaml")
    store = RunStore.for_home(home)
    try:  # what a backfill killed right after claiming a slot leaves behind
        backfills = BackfillStore(store.engine)
        record, _ = backfills.start_or_continue(
            new_id="bf-killed", pipeline="daily", range_start="2024-01-01",
            range_end="2024-01-01", every=None, options={}, slot_count=1,
        )  # fmt: skip
        slot = datetime(2024, 1, 1, 2, tzinfo=UTC)
        claim = store.schedules.claim_slot(
            queued_run(spec, run_id="run-left-queued", ds="2024-01-01", slot=slot,
                       triggered_by=RunTrigger.BACKFILL)
        )  # fmt: skip
        backfills.add_run(record.backfill_id, claim.run_id, slot)
    finally:
        store.dispose()

    result = cli_in_process("backfill", "cancel", "bf-killed", "-o", "json")
    assert result.code == 0, result.stderr
    assert result.json()["cancelled_queued"] == ["run-left-queued"]
    (run,) = runs_of(home)
    assert run.status is RunStatus.CANCELLED
    listed = cli_in_process("backfill", "list", "-o", "json").json()
    assert [(b["backfill_id"], b["status"]) for b in listed] == [("bf-killed", "cancelled")]
