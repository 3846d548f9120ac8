"""The scheduler's commands on bad input: exit 2, one line naming what to fix, nothing
recorded; and what they do on good input, in this process (no serve needed)."""

from __future__ import annotations

from pathlib import Path

from batchpilot.store import RunStore
from tests.cli_runner import Cli
from tests.scheduler.conftest import write_pipeline


def folder_with(tmp_path: Path, **pipelines) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, schedule in pipelines.items():
        write_pipeline(folder, name, schedule)
    return folder


def recorded_runs(home: Path) -> int:
    store = RunStore.for_home(home)
    try:
        return len(store.list_runs(limit=100))
    finally:
        store.dispose()


def test_serve_without_a_folder_or_with_a_missing_one_exits_2(cli_in_process: Cli, tmp_path):
    missing = cli_in_process("serve")
    assert missing.code == 2 and "--pipelines DIR" in missing.stderr
    absent = cli_in_process("serve", "--pipelines", str(tmp_path / "nowhere"))
    assert absent.code == 2 and "does not exist" in absent.stderr
    assert "Traceback" not in absent.stderr


def test_trigger_refuses_an_unknown_pipeline_and_a_bad_date(
    cli_in_process: Cli, tmp_path: Path, home: Path
):
    folder = folder_with(tmp_path, hourly="0 * * * *")
    unknown = cli_in_process("trigger", "nope", "--pipelines", str(folder))
    assert unknown.code == 2
    assert "no pipeline named 'nope'" in unknown.stderr and "hourly" in unknown.stderr
    bad_date = cli_in_process("trigger", "hourly", "--pipelines", str(folder), "--date", "31/12")
    assert bad_date.code == 2 and "YYYY-MM-DD" in bad_date.stderr
    assert recorded_runs(home) == 0


def test_trigger_refuses_params_the_pipeline_cannot_render(
    cli_in_process: Cli, tmp_path: Path, home: Path
):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(
        folder,
        "needs_param",
        nodes=[{"id": "load", "type": "load.file", "config": {"path": "{{ params.out }}"}}],
    )
    result = cli_in_process("trigger", "needs_param", "--pipelines", str(folder))
    assert result.code == 2 and "out" in result.stderr
    assert recorded_runs(home) == 0


def test_trigger_queues_a_run_and_a_key_returns_it_again(
    cli_in_process: Cli, tmp_path: Path, home: Path
):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    schedule = {"cron": "0 * * * *", "timezone": "Asia/Tokyo"}
    write_pipeline(folder, "hourly", schedule, params={"region": "us"})
    args = ("trigger", "hourly", "--pipelines", str(folder), "--date", "2026-11-30", "-o", "json")
    first = cli_in_process(*args, "--idempotency-key", "abc", "--param", "region=eu")
    again = cli_in_process(*args, "--idempotency-key", "abc")
    other = cli_in_process(*args)
    assert [first.code, again.code, other.code] == [0, 0, 0], first.stderr
    assert first.json()["run_id"] == again.json()["run_id"] != other.json()["run_id"]
    store = RunStore.for_home(home)
    try:
        run = store.get_run(first.json()["run_id"])
    finally:
        store.dispose()
    assert run.status.value == "queued" and run.ds == "2026-11-30"
    assert run.params == {"region": "eu"} and run.triggered_by == "manual"
    assert recorded_runs(home) == 2


TYPED_PARAMS = {
    "count": {"type": "integer", "minimum": 1, "default": 5},
    "full": {"type": "boolean", "default": False},
    "region": {"enum": ["north", "south"], "default": "north"},
}


def test_trigger_types_params_as_run_does(cli_in_process: Cli, tmp_path: Path, home: Path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "typed", params=TYPED_PARAMS)
    queued = cli_in_process(
        "trigger", "typed", "--pipelines", str(folder), "-o", "json",
        "--param", "count=10", "--param", "full=yes",
    )  # fmt: skip
    assert queued.code == 0, queued.stderr
    store = RunStore.for_home(home)
    try:
        run = store.get_run(queued.json()["run_id"])
    finally:
        store.dispose()
    assert run.params == {"count": 10, "full": True, "region": "north"}
    assert type(run.params["count"]) is int


def test_trigger_refuses_unknown_and_ill_typed_params_naming_them(
    cli_in_process: Cli, tmp_path: Path, home: Path
):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, "typed", params=TYPED_PARAMS)
    trigger = ("trigger", "typed", "--pipelines", str(folder))
    unknown = cli_in_process(*trigger, "--param", "nosuch=1")
    assert unknown.code == 2
    assert "params.nosuch" in unknown.stderr and "unknown parameter 'nosuch'" in unknown.stderr
    assert "known: count, full, region" in unknown.stderr
    not_a_number = cli_in_process(*trigger, "--param", "count=ten")
    assert not_a_number.code == 2 and "params.count" in not_a_number.stderr
    too_small = cli_in_process(*trigger, "--param", "count=0")
    assert too_small.code == 2 and "params.count" in too_small.stderr
    not_allowed = cli_in_process(*trigger, "--param", "region=east")
    assert not_allowed.code == 2 and "params.region" in not_allowed.stderr
    for result in (unknown, not_a_number, too_small, not_allowed):
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert recorded_runs(home) == 0


def test_trigger_refuses_a_date_run_would_refuse(cli_in_process: Cli, tmp_path: Path, home: Path):
    folder = folder_with(tmp_path, hourly="0 * * * *")
    for text in ("2026-13-45", "yesterday", "20261130"):
        result = cli_in_process("trigger", "hourly", "--pipelines", str(folder), "--date", text)
        assert result.code == 2 and "YYYY-MM-DD" in result.stderr, text
    assert recorded_runs(home) == 0


def test_pause_and_unpause_show_in_pipelines_list(cli_in_process: Cli, tmp_path: Path):
    folder = folder_with(
        tmp_path, hourly="0 * * * *", paris={"cron": "30 2 * * 0", "timezone": "Europe/Paris"}
    )
    paused = cli_in_process("pause", "hourly", "--pipelines", str(folder))
    assert paused.code == 0 and "paused" in paused.stdout
    listed = cli_in_process("pipelines", "list", "--pipelines", str(folder), "-o", "json")
    rows = {row["name"]: row for row in listed.json()}
    assert rows["hourly"]["paused"] is True and rows["hourly"]["paused_reason"] == "paused by hand"
    assert rows["paris"]["schedule"] == "every Sunday at 02:30"
    assert rows["paris"]["timezone"] == "Europe/Paris"
    assert rows["paris"]["next_run"].endswith(("+01:00", "+02:00"))
    assert rows["paris"]["last_run"] is None and rows["paris"]["errors"] == []
    assert cli_in_process("unpause", "hourly", "--pipelines", str(folder)).code == 0
    listed = cli_in_process("pipelines", "list", "--pipelines", str(folder), "-o", "json")
    assert {row["name"]: row for row in listed.json()}["hourly"]["paused"] is False


def test_pause_of_an_unknown_pipeline_exits_2(cli_in_process: Cli, tmp_path: Path):
    folder = folder_with(tmp_path, hourly="0 * * * *")
    assert cli_in_process("pause", "nope", "--pipelines", str(folder)).code == 2
    without_folder = cli_in_process("pause", "nope")
    assert without_folder.code == 2 and "no schedule or run" in without_folder.stderr
