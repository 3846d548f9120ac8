"""``batchpilot serve`` as users run it: a real process, real workers, real signals.

Each test starts ``serve`` in its own process group and always kills what is
left of it (and its workers) when the test ends, passed or not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchpilot.states import RunStatus
from batchpilot.store import RunRecord, RunStore
from tests.cli_processes import CliProcess, CliProcesses, kill_run_owner
from tests.cli_runner import Cli
from tests.scheduler.conftest import write_pipeline

pytestmark = pytest.mark.slow  # each test starts `batchpilot serve` processes

#: any free port for the API, so tests run side by side
ANY_PORT = ("--port", "0")

SLOW_STEP = '''
import time
from pathlib import Path


def slow_once(params: dict) -> None:
    """Sleeps a minute the first time (a marker remembers), returns at once after."""
    marker = Path(params["marker"])
    if marker.exists():
        return None
    marker.write_text("started")
    time.sleep(60)
'''


@pytest.fixture
def serve(cli_processes: CliProcesses) -> Callable[[Path], CliProcess]:
    """Starts ``serve`` processes on a folder (killed at the end, with their workers)."""
    return lambda folder: cli_processes("serve", "--pipelines", str(folder), *ANY_PORT)


def slow_pipeline(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with pipeline ``slow`` (hourly; its step sleeps a minute the first time),
    and the marker file its step creates when it starts."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "slow_steps.py").write_text(SLOW_STEP)
    marker = tmp_path / "slow.marker"
    write_pipeline(
        folder,
        "slow",
        "0 * * * *",
        params={"marker": str(marker)},
        nodes=[{"id": "wait", "type": "python", "config": {"callable": "slow_steps:slow_once"}}],
    )
    return folder, marker


def runs_of(home: Path, pipeline: str) -> list[RunRecord]:
    store = RunStore.for_home(home)
    try:
        return store.list_runs(limit=100, pipeline=pipeline)
    finally:
        store.dispose()


def test_serve_runs_the_due_slot_and_a_trigger_once_keeps_a_broken_file_and_stops_on_sigterm(
    serve, cli: Cli, home: Path, tmp_path: Path
):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    path = write_pipeline(folder, "hourly", {"cron": "0 * * * *", "timezone": "Europe/Paris"})
    process = serve(folder)

    def scheduled_run_succeeded() -> bool:
        return any(r.status is RunStatus.SUCCESS for r in runs_of(home, "hourly"))

    process.wait_for(scheduled_run_succeeded, "the latest due slot's run")
    (scheduled,) = runs_of(home, "hourly")
    assert scheduled.triggered_by == "schedule" and scheduled.slot is not None

    first = cli(
        "trigger", "hourly", "--pipelines", str(folder), "--idempotency-key", "k-1", "-o", "json"
    )
    again = cli(
        "trigger", "hourly", "--pipelines", str(folder), "--idempotency-key", "k-1", "-o", "json"
    )
    assert first.code == 0 and again.code == 0, first.stderr + again.stderr
    assert first.json()["created"] is True and again.json()["created"] is False
    run_id = first.json()["run_id"]
    assert again.json()["run_id"] == run_id

    def triggered_run_ended() -> RunRecord | None:
        run = next(r for r in runs_of(home, "hourly") if r.run_id == run_id)
        return run if run.status.is_terminal() else None

    ended = process.wait_for(triggered_run_ended, "the triggered run")
    assert ended.status is RunStatus.SUCCESS and ended.triggered_by == "manual"
    assert len(runs_of(home, "hourly")) == 2

    # an invalid edit: the last valid version stays scheduled, pipelines list shows the error
    path.write_text(path.read_text().replace("Europe/Paris", "Europe/Atlantis"))
    process.wait_for(lambda: "Europe/Atlantis" in process.output(), "serve to notice the edit")
    listed = cli("pipelines", "list", "--pipelines", str(folder), "-o", "json")
    assert listed.code == 0, listed.stderr
    (row,) = listed.json()
    assert row["name"] == "hourly" and row["timezone"] == "Europe/Paris"
    assert row["schedule"] == "every hour at :00" and row["paused"] is False
    assert "Europe/Atlantis" in row["errors"][0] and "schedule.timezone" in row["errors"][0]
    assert row["last_run"] in {r.run_id for r in runs_of(home, "hourly")}

    assert process.terminate() == 0
    assert "stopped" in process.output()


def test_kill_9_of_serve_and_its_worker_then_restart_resumes_the_run_and_runs_no_slot_twice(
    serve, cli: Cli, home: Path, tmp_path: Path
):
    folder, marker = slow_pipeline(tmp_path)
    first = serve(folder)

    def running_run() -> RunRecord | None:
        runs = [r for r in runs_of(home, "slow") if r.status is RunStatus.RUNNING]
        return runs[0] if runs and marker.exists() else None

    run = first.wait_for(running_run, "the scheduled run to be running")
    first.kill()
    kill_run_owner(run)  # its worker dies too (as in an OOM kill of the whole machine's jobs)

    second = serve(folder)

    def run_ended() -> RunRecord | None:
        (only,) = runs_of(home, "slow")
        return only if only.status.is_terminal() else None

    ended = second.wait_for(run_ended, "the resumed run to end")
    assert ended.run_id == run.run_id and ended.status is RunStatus.SUCCESS
    assert "resuming run" in second.output()
    assert second.terminate() == 0
    runs = runs_of(home, "slow")
    assert len(runs) == 1 and not [r for r in runs if r.status is RunStatus.RUNNING]


def test_sigterm_stops_a_running_run_resumably_and_exits_0(
    serve, cli: Cli, home: Path, tmp_path: Path
):
    folder, marker = slow_pipeline(tmp_path)
    process = serve(folder)
    process.wait_for(marker.exists, "the run's step to start")
    assert process.terminate() == 0
    (run,) = runs_of(home, "slow")
    assert run.status is RunStatus.FAILED and run.owner is None
    assert f"batchpilot resume {run.run_id}" in (run.error or "")
