"""``batchpilot serve`` evaluates the rules on the runs its workers drive and delivers the
outbox: a real serve process, real workers, a real webhook on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.test_alerts_cli import write_pipeline
from tests.cli_processes import CliProcesses
from tests.cli_runner import Cli
from tests.notify.servers import WebhookServer


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


def test_serve_alerts_on_a_worker_run_and_sends_the_recovery(
    cli: Cli,
    tmp_path: Path,
    webhook_server: WebhookServer,
    cli_processes: CliProcesses,
):
    cli.env["BATCHPILOT_NOTIFY_ONCALL"] = (
        f"webhook+{webhook_server.url('/hook')}?secret={webhook_server.secret}"
    )
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder)
    cli.env["PYTHONPATH"] = os.pathsep.join(
        [str(folder), *filter(None, [cli.env.get("PYTHONPATH")])]
    )
    (folder / "FAIL").touch()
    cli_processes("serve", "--pipelines", str(folder))
    assert cli("trigger", "nightly", "--pipelines", str(folder)).code == 0
    [alert] = webhook_server.wait_for_requests(1, timeout_s=120)
    assert alert.status == 200
    assert alert.json["title"] == "nightly: run failed"
    (folder / "FAIL").unlink()
    assert cli("trigger", "nightly", "--pipelines", str(folder)).code == 0
    received = webhook_server.wait_for_requests(2, timeout_s=120)
    assert received[1].json["title"] == "Recovered: nightly: run failed"
    episodes = cli("alerts", "list", "-o", "json").json()
    assert [(e["rule"], e["state"]) for e in episodes] == [("failure", "resolved")]
    assert len(webhook_server.received) == 2


def test_serve_refuses_a_route_to_an_undefined_channel(cli_in_process: Cli, tmp_path: Path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write_pipeline(folder, notify="{failure: [pager]}")
    result = cli_in_process("serve", "--pipelines", str(folder))
    assert result.code == 2
    assert "field 'notify.failure'" in result.stderr and "'pager'" in result.stderr
