"""``batchpilot run`` ships attempt logs to a real S3-compatible server (moto on
127.0.0.1) and ``batchpilot logs`` reads them back, driven through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.cli_runner import Cli, CliResult
from tests.s3_server import SECRET_ACCESS_KEY, S3Server

STEPS = """
import time
from pathlib import Path

def chatter(params):
    for number in range(1, 4):
        print(f"line {number} before the kill", flush=True)
    Path(params["printed"]).write_text("")
    time.sleep(600)

def chatter_until_woken(params):
    print("waiting for the wake file", flush=True)
    while not Path(params["wake"]).exists():
        time.sleep(0.05)
    print("woken up", flush=True)
"""


@pytest.fixture
def s3_cli(cli: Cli, s3_server: S3Server, bucket: str, tmp_path: Path) -> Cli:
    """The CLI with BATCHPILOT_LOGS_URL on a fresh bucket, shipping every 0.5 s."""
    cli.env.update(s3_server.env())
    cli.env["BATCHPILOT_LOGS_URL"] = f"s3://{bucket}/batchpilot/logs"
    cli.env["BATCHPILOT_LOGS_SHIP_INTERVAL"] = "0.5"
    (tmp_path / "steps_mod.py").write_text(STEPS)
    return cli


@pytest.fixture
def s3_reader(s3_cli: Cli, cli_in_process: Cli, aws_env: dict[str, str]) -> Cli:
    """The same settings, for commands that only read (called in this process)."""
    cli_in_process.env.update(s3_cli.env)
    return cli_in_process


def _start(cli: Cli, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchpilot", *args],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_until(condition, what: str) -> None:
    for _ in range(1200):  # a guard against a hang, not a timing assertion
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"never happened: {what}")


def _no_secret(*results: CliResult | tuple[str, str]) -> None:
    for result in results:
        texts = (result.stdout, result.stderr) if isinstance(result, CliResult) else result
        assert all(SECRET_ACCESS_KEY not in text for text in texts)


def test_a_task_killed_with_kill_9_keeps_its_earlier_lines_in_the_bucket_and_logs_reads_them(
    s3_cli: Cli, s3_reader: Cli, s3_server: S3Server, bucket: str, tmp_path: Path, home: Path
):
    printed = tmp_path / "printed"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: doomed\nparams: {{printed: '{printed}'}}\n"
        "nodes: [{id: talk, type: python, config: {callable: 'steps_mod:chatter'}}]\n"
    )
    proc = _start(s3_cli, "run", str(pipeline), "-q")
    try:
        _wait_until(printed.exists, "the task printed its lines")
        prefix = f"{bucket}/batchpilot/logs/doomed"
        _wait_until(
            lambda: b"line 3 before the kill" in b"".join(s3_server.objects(prefix).values()),
            "the running task's lines reached the bucket",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    _no_secret((out, err))

    (run,) = s3_reader("runs", "list", "-o", "json").json()
    shutil.rmtree(home / "runs" / run["run_id"])  # the machine's copy is gone
    logs = s3_reader("logs", run["run_id"], "--task", "talk")
    assert logs.code == 0, logs.stderr
    for number in range(1, 4):
        assert f"line {number} before the kill" in logs.stdout
    as_json = s3_reader("logs", run["run_id"], "-o", "json").json()
    assert [(item["task_id"], item["attempt"]) for item in as_json] == [("talk", 1)]
    assert "line 3 before the kill" in as_json[0]["log"]
    followed = s3_reader("logs", run["run_id"], "--follow")  # the run died: no endless wait
    assert followed.code == 0 and "line 3 before the kill" in followed.stdout
    assert "no process drives it" in followed.stderr
    assert f"batchpilot resume {run['run_id']}" in followed.stderr
    _no_secret(logs, followed)


def test_logs_follow_prints_the_lines_as_they_come_then_the_same_from_the_bucket(
    s3_cli: Cli, s3_reader: Cli, tmp_path: Path, home: Path
):
    wake = tmp_path / "wake"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: sleeper\nparams: {{wake: '{wake}'}}\n"
        "nodes: [{id: nap, type: python, config: {callable: 'steps_mod:chatter_until_woken'}}]\n"
    )
    run = _start(s3_cli, "run", str(pipeline), "-q", "-o", "json")
    try:
        _wait_until(lambda: list(home.glob("runs/*/logs/nap.attempt-1.log")), "the task started")
        (log_file,) = home.glob("runs/*/logs/nap.attempt-1.log")
        run_id = log_file.parent.parent.name
        follow = _start(s3_cli, "logs", run_id, "--follow")
        _wait_until(lambda: "waiting for the wake file" in log_file.read_text(), "it printed")
        wake.write_text("")
        followed, follow_err = follow.communicate(timeout=120)  # ends with the run
        ran, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert follow.returncode == 0, follow_err
    assert json.loads(ran)["status"] == "success"
    assert followed.index("waiting for the wake file") < followed.index("woken up")
    assert "succeeded" in followed

    local = s3_reader("logs", run_id)
    shutil.rmtree(home / "runs" / run_id)
    remote = s3_reader("logs", run_id)
    assert remote.code == 0 and remote.stdout == local.stdout
    again = s3_reader("logs", run_id, "--follow")  # an ended run: everything, then exit
    assert again.code == 0 and "woken up" in again.stdout
    _no_secret(local, remote, again, (followed, follow_err))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://bucket.example.com/logs", "must start with s3://"),
        ("s3://", "names no bucket"),
        ("s3:///logs", "names no bucket"),
        ("/var/log/batchpilot", "must start with s3://"),
        (f"s3://AKIA:{SECRET_ACCESS_KEY}@bucket/logs", "must not hold credentials"),
    ],
)
def test_a_bad_logs_url_exits_2_naming_the_variable(cli_in_process: Cli, value: str, problem: str):
    cli_in_process.env["BATCHPILOT_LOGS_URL"] = value
    result = cli_in_process("runs", "list")
    assert result.code == 2
    assert "BATCHPILOT_LOGS_URL" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr
    _no_secret(result)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "301"])
def test_a_bad_ship_interval_exits_2_naming_the_variable(cli_in_process: Cli, value: str):
    cli_in_process.env["BATCHPILOT_LOGS_URL"] = "s3://bucket/logs"
    cli_in_process.env["BATCHPILOT_LOGS_SHIP_INTERVAL"] = value
    result = cli_in_process("runs", "list")
    assert result.code == 2
    assert "BATCHPILOT_LOGS_SHIP_INTERVAL must be a number of seconds" in result.stderr


def test_clean_deletes_a_runs_shipped_logs_and_leaves_no_orphan_in_the_bucket(
    s3_cli: Cli, s3_reader: Cli, s3_server: S3Server, bucket: str, tmp_path: Path
):
    wake = tmp_path / "wake"
    wake.touch()
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: tidy\nparams: {{wake: '{wake}'}}\n"
        "nodes: [{id: talk, type: python, config: {callable: 'steps_mod:chatter_until_woken'}}]\n"
    )
    done = s3_cli("run", str(pipeline), "-q")
    assert done.code == 0, done.stderr
    prefix = f"{bucket}/batchpilot/logs/tidy"
    shipped = s3_server.objects(prefix)
    assert shipped and b"woken up" in b"".join(shipped.values())
    threading.Event().wait(1.1)  # the run must be older than the 1 s cut-off below

    dry = s3_reader("clean", "--older-than", "1s", "--dry-run", "-o", "json")
    assert dry.code == 0, dry.stderr
    counted = dry.json()["files"]["remote"]
    assert counted == {"files": len(shipped), "bytes": sum(len(b) for b in shipped.values())}
    cleaned = s3_reader("clean", "--older-than", "1s", "-o", "json")
    assert cleaned.code == 0, cleaned.stderr
    assert cleaned.json()["files"]["remote"] == counted
    assert s3_server.objects(prefix) == {}
    _no_secret(dry, cleaned)
