"""``batchpilot serve`` as users run it: a real process, real workers, real signals.

Each test starts ``serve`` in its own process group and always kills what is
left of it (and its workers) when the test ends, passed or not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchpilot.states import RunStatus
from batchpilot.store import RunRecord, RunStore
from tests.cli_runner import Cli
from tests.process_guard import guard_process
from tests.scheduler.conftest import write_pipeline

pytestmark = pytest.mark.slow  # each test starts `batchpilot serve` processes

WAIT_S = 90.0
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


class Serve:
    """A ``batchpilot serve`` subprocess in its own process group."""

    def __init__(self, cli: Cli, folder: Path, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            # --port 0: any free port for the API, so tests run side by side
            [sys.executable, "-m", "batchpilot", "serve", "--pipelines", str(folder), *ANY_PORT],
            env=cli.env,
            cwd=cli.cwd,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        guard_process(self.process.pid)  # killed by the fixture; and if pytest is killed

    def terminate(self) -> int:
        """SIGTERM; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """kill -9 of serve alone (its workers live in their own groups)."""
        self.process.kill()
        self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[Callable[[Path], Serve]]:
    """Starts serve processes; at the end kills them and every worker they started."""
    started: list[Serve] = []

    def start(folder: Path) -> Serve:
        process = Serve(cli, folder, tmp_path / f"serve-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            os.killpg(process.process.pid, signal.SIGKILL)
            process.process.wait(timeout=30)
    store = RunStore.for_home(Path(cli.env["BATCHPILOT_HOME"]))
    for run in store.runs_in_status([RunStatus.RUNNING]):
        _kill_owner(run)
    store.dispose()


def _kill_owner(run: RunRecord) -> None:
    if run.owner:
        pid = int(run.owner.split(":")[1])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def wait_for(check: Callable[[], object], what: str, serve: Serve) -> object:
    """Poll ``check`` until it returns something truthy (an event, not a timing claim)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen; serve said:\n{serve.output()}")


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

    wait_for(scheduled_run_succeeded, "the latest due slot's run", process)
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

    ended = wait_for(triggered_run_ended, "the triggered run", process)
    assert ended.status is RunStatus.SUCCESS and ended.triggered_by == "manual"
    assert len(runs_of(home, "hourly")) == 2

    # an invalid edit: the last valid version stays scheduled, pipelines list shows the error
    path.write_text(path.read_text().replace("Europe/Paris", "Europe/Atlantis"))
    wait_for(lambda: "Europe/Atlantis" in process.output(), "serve to notice the edit", process)
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
    first = serve(folder)

    def running_run() -> RunRecord | None:
        runs = [r for r in runs_of(home, "slow") if r.status is RunStatus.RUNNING]
        return runs[0] if runs and marker.exists() else None

    run = wait_for(running_run, "the scheduled run to be running", first)
    first.kill()
    _kill_owner(run)  # its worker dies too (as in an OOM kill of the whole machine's jobs)

    second = serve(folder)

    def run_ended() -> RunRecord | None:
        (only,) = runs_of(home, "slow")
        return only if only.status.is_terminal() else None

    ended = wait_for(run_ended, "the resumed run to end", second)
    assert ended.run_id == run.run_id and ended.status is RunStatus.SUCCESS
    assert "resuming run" in second.output()
    assert second.terminate() == 0
    runs = runs_of(home, "slow")
    assert len(runs) == 1 and not [r for r in runs if r.status is RunStatus.RUNNING]


def test_sigterm_stops_a_running_run_resumably_and_exits_0(
    serve, cli: Cli, home: Path, tmp_path: Path
):
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
    process = serve(folder)
    wait_for(marker.exists, "the run's step to start", process)
    assert process.terminate() == 0
    (run,) = runs_of(home, "slow")
    assert run.status is RunStatus.FAILED and run.owner is None
    assert f"batchpilot resume {run.run_id}" in (run.error or "")
