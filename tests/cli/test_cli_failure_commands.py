"""cancel, retry, compensate, runs reap and SIGTERM, driven through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_runner import Cli

STEPS = """
import time
from pathlib import Path

def spin():
    while True:   # never checks for cancellation: the engine must stop it
        sum(range(1000))

def sleepy():
    time.sleep(600)

def nap_until_woken(params):
    while not Path(params["wake"]).exists():
        time.sleep(0.1)

def flaky(params):
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first run fails")

def note(event, callback_id):
    with open(Path(__file__).parent / "callbacks.log", "a") as f:
        f.write(f"{event['event']} {event['task_id']} {callback_id}\\n")
"""


def write(folder: Path, body: str) -> Path:
    (folder / "steps_mod.py").write_text(STEPS)
    path = folder / "p.yaml"
    path.write_text(body)
    return path


def start(cli: Cli, *args: str, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """``batchpilot ARGS`` in its own process group, with faulthandler on (see
    :func:`ended`). ``sigint_ignored``: started as a non-interactive shell starts a
    command in the background (``batchpilot run … &`` in a script), with SIGINT
    ignored, which the process inherits."""
    command = [sys.executable, "-m", "batchpilot", *args]
    if sigint_ignored:
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    return subprocess.Popen(
        command,
        cwd=cli.cwd,
        env={**cli.env, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def ended(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """The process's stdout and stderr once it exits. A hang guard, not a speed claim: a
    process still alive after ``timeout`` gets SIGABRT, so faulthandler writes every
    thread's stack to its stderr, and the test fails showing where it hung."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        stacks = f"batchpilot still running after {timeout:g}s; stacks:\n{err}"
        raise AssertionError(stacks) from None


def wait_for_running(cli: Cli, task: str, timeout: float = 60) -> str:
    """The id of the run whose ``task`` is running, polled in this process."""
    poll = cli.in_process_twin()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = poll("runs", "list", "-o", "json")
        if runs.code == 0 and runs.json():
            run_id = runs.json()[0]["run_id"]
            shown = poll("runs", "show", run_id, "-o", "json").json()
            if shown["tasks"][task]["state"] == "running":
                return run_id
        time.sleep(0.2)
    raise AssertionError(f"{task} never started")


def test_cancel_from_another_process_stops_a_busy_task(cli: Cli, tmp_path: Path):
    """A task that never checks for cancellation is stopped, the run ends ``cancelled``
    and its process exits. How fast (about a second: the run polls for a cancel every
    0.5 s) is measured by ``benchmarks/cancel_latency.py``, not asserted here; the
    60 s bound only keeps a hang from blocking the suite."""
    path = write(
        tmp_path,
        """
name: busy
nodes:
  - {id: spin, type: python, config: {callable: "steps_mod:spin"}}
  - {id: after, type: empty, depends_on: [spin]}
""",
    )
    proc = start(cli, "run", str(path), "-o", "json")
    run_id = wait_for_running(cli, "spin")
    cancelled = cli("cancel", run_id, "-o", "json")
    assert cancelled.code == 0, cancelled.stderr
    out, _ = ended(proc)
    assert proc.returncode == 1
    for data in (cancelled.json(), json.loads(out)):  # what cancel and the run's process print
        assert data["run_id"] == run_id and data["status"] == "cancelled"
        assert data["tasks"]["spin"]["state"] == "cancelled"
        assert data["tasks"]["after"]["state"] == "cancelled"
    again = cli("cancel", run_id)
    assert again.code == 2 and "only a queued or running run can be cancelled" in again.stderr


def test_sigterm_stops_the_run_and_says_how_to_resume(cli: Cli, tmp_path: Path):
    path = write(
        tmp_path,
        """
name: sleepy
nodes: [{id: nap, type: python, config: {callable: "steps_mod:sleepy"}}]
""",
    )
    proc = start(cli, "run", str(path), "-q")
    run_id = wait_for_running(cli, "nap")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"batchpilot resume {run_id}" in err
    shown = cli("runs", "show", run_id, "-o", "json").json()
    assert shown["status"] == "failed" and shown["tasks"]["nap"]["state"] == "pending"


def test_an_interrupted_run_with_json_output_still_prints_the_run_and_how_to_resume(
    cli: Cli, tmp_path: Path
):
    wake = tmp_path / "wake"
    path = write(
        tmp_path,
        f"""
name: napper
params: {{wake: "{wake}"}}
nodes: [{{id: nap, type: python, config: {{callable: "steps_mod:nap_until_woken"}}}}]
""",
    )
    proc = start(cli, "run", str(path), "-q", "-o", "json")
    run_id = wait_for_running(cli, "nap")
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = ended(proc)
    assert proc.returncode == 1
    printed = json.loads(out)
    assert printed["run_id"] == run_id and printed["status"] == "failed"
    assert printed["error"] == f"interrupted; resume with: batchpilot resume {run_id}"
    assert printed["tasks"]["nap"]["state"] == "pending"
    assert f"batchpilot resume {run_id}" in err

    proc = start(cli, "resume", run_id, "-q", "-o", "json")  # interrupted again: same output
    wait_for_running(cli, "nap")
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = ended(proc)
    assert proc.returncode == 1
    assert json.loads(out)["status"] == "failed"

    wake.write_text("")
    resumed = cli("resume", run_id, "-q", "-o", "json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "success" and resumed.json()["error"] is None


@pytest.mark.parametrize(
    "sigint_ignored", [False, True], ids=["from-a-terminal", "started-with-sigint-ignored"]
)
def test_ctrl_c_of_a_run_with_json_output_prints_the_run_too(
    cli: Cli, tmp_path: Path, sigint_ignored: bool
):
    """Ctrl-C stops the run resumably also when the process inherited SIGINT ignored
    (a launcher's ``&``): Python then installs no handler of its own for it."""
    path = write(
        tmp_path,
        """
name: sleepy
nodes: [{id: nap, type: python, config: {callable: "steps_mod:sleepy"}}]
""",
    )
    proc = start(cli, "run", str(path), "-q", "-o", "json", sigint_ignored=sigint_ignored)
    run_id = wait_for_running(cli, "nap")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    out, err = ended(proc)
    assert proc.returncode == 1
    printed = json.loads(out)
    assert printed["run_id"] == run_id and printed["status"] == "failed"
    assert printed["error"] == f"interrupted; resume with: batchpilot resume {run_id}"
    assert "Traceback" not in err


def test_runs_reap_fails_a_dead_run_and_fires_its_failure_callbacks_once(cli: Cli, tmp_path: Path):
    path = write(
        tmp_path,
        """
name: doomed
nodes:
  - {id: nap, type: python, config: {callable: "steps_mod:sleepy"}, on_failure: "steps_mod:note"}
""",
    )
    proc = start(cli, "run", str(path), "-q")
    run_id = wait_for_running(cli, "nap")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    reaped = cli("runs", "reap", "-o", "json")
    assert reaped.code == 0
    assert reaped.json() == [
        {"run_id": run_id, "status": "failed", "closed_tasks": ["nap"], "callbacks_fired": 1}
    ]
    assert cli("runs", "reap", "-o", "json").json() == []
    lines = (tmp_path / "callbacks.log").read_text().splitlines()
    assert lines == ["on_failure nap nap:on_failure:1:0"]
    shown = cli("runs", "show", run_id, "-o", "json").json()
    assert shown["status"] == "failed"
    assert shown["tasks"]["nap"]["state"] == "failed"


def test_retry_reruns_failed_tasks_in_the_same_run(cli: Cli, tmp_path: Path):
    path = write(
        tmp_path,
        f"""
name: flaky
params: {{marker: "{tmp_path / "marker"}"}}
nodes:
  - {{id: flaky, type: python, config: {{callable: "steps_mod:flaky"}}}}
  - {{id: after, type: empty, depends_on: [flaky]}}
""",
    )
    first = cli("run", str(path), "-o", "json")
    assert first.code == 1
    run_id = first.json()["run_id"]
    retried = cli("retry", run_id, "-o", "json")
    assert retried.code == 0, retried.stderr
    data = retried.json()
    assert data["run_id"] == run_id and data["status"] == "success"
    assert data["tasks"]["flaky"]["attempts"] == 2
    logs = json.loads(cli("logs", run_id, "--task", "flaky", "-o", "json").stdout)
    assert [item["state"] for item in logs] == ["failed", "success"]
    assert "first run fails" in logs[0]["log"]
    assert cli("retry", run_id).code == 2
    assert cli("retry", run_id, "--downstream").code == 2  # --downstream needs --task


def test_manual_compensation_through_the_cli(cli: Cli, tmp_path: Path):
    db = tmp_path / "shop.db"
    path = write(
        tmp_path,
        f"""
name: manual_saga
compensation: manual
connections: {{shop: "sqlite:///{db}"}}
nodes:
  - id: create
    type: sql
    config: {{connection: shop, sql: "CREATE TABLE t (x INT); INSERT INTO t VALUES (1)"}}
    compensate: {{type: sql, config: {{connection: shop, sql: "DROP TABLE t"}}}}
  - {{id: boom, type: python, config: {{callable: "steps_mod:sleepy"}}, timeout: 0.5,
     depends_on: [create]}}
""",
    )
    failed = cli("run", str(path), "-o", "json")
    assert failed.code == 1
    assert failed.json()["tasks"]["create"]["state"] == "success"
    done = cli("compensate", failed.json()["run_id"], "-o", "json")
    assert done.code == 0, done.stderr
    assert done.json()["tasks"]["create"]["state"] == "compensated"
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone() == (
            0,
        )
    assert cli("compensate", "nope").code == 2
