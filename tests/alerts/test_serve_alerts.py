"""``batchpilot serve`` evaluates the rules on the runs its workers drive and delivers the
outbox: a real serve process, real workers, a real webhook on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.test_alerts_cli import write_pipeline
from tests.cli_runner import Cli
from tests.notify.servers import WebhookServer
from tests.process_guard import guard_process


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture
def serve(cli: Cli, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Serve processes a test starts; killed with their process group at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def start_serve(cli: Cli, folder: Path, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "batchpilot", "serve", "--pipelines", str(folder)],
        env=cli.env,
        cwd=cli.cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    guard_process(process.pid)  # killed by the fixture; and if pytest is killed
    return process


def test_serve_alerts_on_a_worker_run_and_sends_the_recovery(
    cli: Cli,
    tmp_path: Path,
    webhook_server: WebhookServer,
    serve: list[subprocess.Popen[bytes]],
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
    serve.append(start_serve(cli, folder, tmp_path / "serve.log"))
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
