"""End to end through the real CLI: ``batchpilot run`` alerts a real webhook on 127.0.0.1
through the outbox once per episode, sends the recovery notice, and ``alerts list`` /
``alerts ack`` show and acknowledge the episode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_runner import Cli
from tests.notify.servers import WebhookServer

STEPS = """
from pathlib import Path

def maybe_fail(params):
    if Path(params["flag"]).exists():
        raise RuntimeError("the source file is empty")
"""


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


def write_pipeline(folder: Path, *, notify: str = "{failure: [oncall]}") -> Path:
    (folder / "steps_mod.py").write_text(STEPS)
    path = folder / "nightly.yaml"
    path.write_text(
        f"""
name: nightly
params: {{flag: "{folder / "FAIL"}"}}
notify: {notify}
nodes: [{{id: work, type: python, config: {{callable: "steps_mod:maybe_fail"}}}}]
"""
    )
    return path


def test_a_failing_pipeline_alerts_once_then_sends_one_recovery_notice(
    cli: Cli, tmp_path: Path, webhook_server: WebhookServer
):
    cli.env["BATCHPILOT_NOTIFY_ONCALL"] = (
        f"webhook+{webhook_server.url('/hook')}?secret={webhook_server.secret}"
    )
    path = write_pipeline(tmp_path)
    (tmp_path / "FAIL").touch()
    first = cli("run", str(path), "-q", "-o", "json")
    assert first.code == 1
    failed_run = first.json()["run_id"]
    [alert] = webhook_server.wait_for_requests(1)
    assert cli("run", str(path), "-q").code == 1  # the same episode: nothing sent
    (tmp_path / "FAIL").unlink()
    good = cli("run", str(path), "-q", "-o", "json")
    assert good.code == 0
    received = webhook_server.wait_for_requests(2)
    assert len(received) == 2
    assert [r.status for r in received] == [200, 200]  # signed, with an Idempotency-Key
    body = alert.json
    assert body["title"] == "nightly: run failed"
    assert body["severity"] == "critical"
    facts = {f["label"]: f["value"] for f in body["facts"]}
    assert facts["Pipeline"] == "nightly" and facts["Run"] == failed_run
    assert facts["Rule"] == "failure"
    assert facts["Observed"] == "failed: failed tasks: work"
    assert "work: RuntimeError: the source file is empty." in body["summary"]
    recovery = received[1].json
    assert recovery["title"] == "Recovered: nightly: run failed"
    assert recovery["severity"] == "resolved"
    assert good.json()["run_id"] in recovery["summary"]

    listed = cli("alerts", "list", "-o", "json")
    assert listed.code == 0
    [episode] = listed.json()
    assert episode["state"] == "resolved" and episode["rule"] == "failure"
    assert episode["run_id"] == failed_run and episode["resolved_at"] is not None
    assert episode["occurrences"] == 2
    for key in ("id", "pipeline", "task", "opened_at", "observed", "baseline", "threshold"):
        assert key in episode
    assert "nightly: run failed" in episode["message"]
    assert cli("alerts", "list", "--open", "-o", "json").json() == []
    assert json.loads(cli("alerts", "list", "--pipeline", "other", "-o", "json").stdout) == []


def test_alerts_ack_acknowledges_and_an_unknown_id_is_exit_2(cli_in_process: Cli, tmp_path: Path):
    path = write_pipeline(tmp_path, notify="{}")
    (tmp_path / "FAIL").touch()
    assert cli_in_process("run", str(path), "-q").code == 1
    [episode] = cli_in_process("alerts", "list", "--open", "-o", "json").json()
    table = cli_in_process("alerts", "list", "--open")
    assert "nightly" in table.stdout and "failure" in table.stdout
    acked = cli_in_process("alerts", "ack", str(episode["id"]), "-o", "json")
    assert acked.code == 0 and acked.json()["acknowledged_at"] is not None
    unknown = cli_in_process("alerts", "ack", "999")
    assert unknown.code == 2
    assert "no alert with id 999" in unknown.stderr


def test_a_channel_that_is_down_never_fails_the_run(cli: Cli, tmp_path: Path):
    from tests.notify.servers import free_port

    cli.env["BATCHPILOT_NOTIFY_ONCALL"] = f"webhook+http://127.0.0.1:{free_port()}/hook"
    path = write_pipeline(tmp_path)
    assert cli("run", str(path), "-q").code == 0  # a good run, nothing to send
    (tmp_path / "FAIL").touch()
    failed = cli("run", str(path), "-q", "-o", "json")
    assert failed.code == 1  # the run's own outcome, not the channel's
    assert failed.json()["status"] == "failed"
    assert "could not be reached" in failed.stderr  # one line in the log, retried later
