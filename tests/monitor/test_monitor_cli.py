"""``batchpilot stats`` and ``batchpilot clean`` from the command line: they translate,
print the library's numbers, and refuse bad input with exit 2 naming the value."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from batchpilot.cli.stats_cli import sparkline
from batchpilot.connections import ConnectionRegistry
from batchpilot.engine import RunService
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus
from batchpilot.store import RunStore, utcnow
from tests.cli_runner import Cli
from tests.monitor.conftest import run_scheduled


@pytest.fixture
def home_service(home: Path) -> Iterator[RunService]:
    """The engine's services on the home the CLI reads (SQLite under it)."""
    settings = Settings(home=home, connections=ConnectionRegistry())
    store = RunStore.for_home(home)
    yield RunService(settings=settings, store=store)
    store.dispose()


def test_stats_prints_the_numbers_as_json_and_as_a_table(
    cli_in_process: Cli,
    home_service: RunService,
    csv_pipeline: Callable[..., PipelineSpec],
):
    for rows in (3, 4, 5, 6):
        assert home_service.start(csv_pipeline("daily", rows=rows)).succeeded
    assert home_service.start(csv_pipeline("daily", fail=True)).status is RunStatus.FAILED

    result = cli_in_process("stats", "daily", "--last", "4", "--output", "json")
    assert result.code == 0, result.stderr
    numbers = result.json()
    assert numbers["runs"] == 4 and numbers["by_status"] == {"success": 3, "failed": 1}
    assert numbers["success_rate"] == 0.75
    assert numbers["rows_written"]["values"] == [4, 5, 6]
    assert numbers["rows_written"]["trend"]["direction"] == "up"
    assert len(numbers["duration_s"]["values"]) == 3
    assert numbers["duration_s"]["p95"] >= numbers["duration_s"]["p50"] > 0

    text = cli_in_process("stats", "daily")
    assert text.code == 0, text.stderr
    assert "daily: last 5 ended runs" in text.stdout
    assert "success rate" in text.stdout and "80.0% (1 failed, 4 success)" in text.stdout
    assert "rows written" in text.stdout and "last 6" in text.stdout
    assert "▁" in text.stdout and "█" in text.stdout


def test_stats_of_an_unknown_pipeline_exits_2_naming_it(
    cli_in_process: Cli, home_service: RunService, csv_pipeline: Callable[..., PipelineSpec]
):
    home_service.start(csv_pipeline("daily"))
    result = cli_in_process("stats", "nightly")
    assert result.code == 2
    assert "unknown pipeline 'nightly'" in result.stderr and "daily" in result.stderr
    assert "Traceback" not in result.stderr


def test_stats_of_a_pipeline_without_ended_runs_says_so(
    cli_in_process: Cli, home_service: RunService, csv_pipeline: Callable[..., PipelineSpec]
):
    spec = csv_pipeline("daily")
    home_service.queue(spec, run_id="queued-1", ds="2026-01-02")  # known, never run
    result = cli_in_process("stats", "daily")
    assert (result.code, result.stdout.strip()) == (0, "pipeline 'daily' has no ended runs yet")
    assert cli_in_process("stats", "daily", "-o", "json").json()["runs"] == 0


def test_runs_show_gives_the_slot_delay_of_a_scheduled_run(
    cli_in_process: Cli, home_service: RunService, csv_pipeline: Callable[..., PipelineSpec]
):
    manual = home_service.start(csv_pipeline("daily")).run_id
    scheduled = run_scheduled(home_service, csv_pipeline("daily"), utcnow() - timedelta(seconds=30))
    shown = cli_in_process("runs", "show", scheduled, "-o", "json").json()
    assert shown["slot_delay_s"] >= 30
    assert cli_in_process("runs", "show", manual, "-o", "json").json()["slot_delay_s"] is None
    assert "after its scheduled slot" in cli_in_process("runs", "show", scheduled).stdout


@pytest.mark.parametrize("age", ["30x", "-1d", "30", "1e400d", ""])
def test_clean_refuses_an_age_it_cannot_read_naming_it(cli_in_process: Cli, age: str):
    result = cli_in_process("clean", "--older-than", age)
    assert result.code == 2
    assert "--older-than" in result.stderr and repr(age) in result.stderr
    assert "Traceback" not in result.stderr


def test_clean_needs_an_age_or_the_retention_setting(cli_in_process: Cli):
    result = cli_in_process("clean")
    assert result.code == 2 and "BATCHPILOT_RETENTION" in result.stderr
    cli_in_process.env["BATCHPILOT_RETENTION"] = "30x"
    result = cli_in_process("clean", "--dry-run")
    assert result.code == 2 and "BATCHPILOT_RETENTION" in result.stderr and "30x" in result.stderr


def test_clean_dry_run_then_clean_over_the_command_line(
    cli_in_process: Cli,
    home: Path,
    home_service: RunService,
    csv_pipeline: Callable[..., PipelineSpec],
):
    done = [home_service.start(csv_pipeline("daily")).run_id for _ in range(3)]

    preview = cli_in_process(
        "clean", "--older-than", "0s", "--keep-last", "1", "--dry-run", "-o", "json"
    )
    assert preview.code == 0, preview.stderr
    counted = preview.json()
    assert counted["dry_run"] and counted["run_ids"] == done[:2]
    assert counted["rows"]["runs"] == 2 and counted["rows"]["tasks"] == 4

    text = cli_in_process("clean", "--older-than", "0s", "--keep-last", "1")
    assert text.code == 0, text.stderr
    assert "deleted 2 runs" in text.stdout and "2 runs, 4 tasks" in text.stdout
    assert not (home / "runs" / done[0]).exists() and (home / "runs" / done[2]).is_dir()
    listed = cli_in_process("runs", "list", "-o", "json").json()
    assert [r["run_id"] for r in listed] == [done[2]]

    nothing = cli_in_process("clean", "--older-than", "0s", "--keep-last", "1")
    assert nothing.code == 0 and "nothing to delete" in nothing.stdout


def test_a_sparkline_scales_from_lowest_to_highest():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0, 10]) == "▁█"
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([]) == ""
