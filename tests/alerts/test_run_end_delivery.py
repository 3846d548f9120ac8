"""At a run's end the rules are evaluated in the run's thread, but the notifications go out
from a thread of their own: a webhook that hangs does not hold the run, and the process
waits for the delivery (``wait_for_deliveries``) only after the run has returned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batchpilot.connections import ConnectionRegistry
from batchpilot.engine import RunService
from batchpilot.monitor.run_end import RunEndMonitor, wait_for_deliveries
from batchpilot.notify import ChannelRegistry, parse_channel
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.outbox import OutboxState


class HeldHook(BaseHTTPRequestHandler):
    """Answers 200 to a POST only once the test releases it."""

    entered = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        HeldHook.entered.set()
        HeldHook.release.wait(30)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def held_hook() -> Iterator[str]:
    HeldHook.entered.clear()
    HeldHook.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), HeldHook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"webhook+http://127.0.0.1:{server.server_port}/hook"
    HeldHook.release.set()
    server.shutdown()
    server.server_close()


def test_a_hanging_webhook_does_not_hold_the_run_and_is_delivered_after_it(
    tmp_path: Path, held_hook: str
):
    store = RunStore.for_home(tmp_path / "home")
    try:
        service = RunService(
            settings=Settings(home=tmp_path / "home", connections=ConnectionRegistry()),
            store=store,
        )
        spec = build_pipeline(
            {
                "name": "breaks",
                "notify": {"default": ["hook"]},
                "nodes": [
                    {
                        "id": "extract",
                        "type": "extract.csv",
                        "retries": 0,
                        "config": {"path": str(tmp_path / "missing.csv")},
                    }
                ],
            }
        )
        channels = ChannelRegistry([parse_channel("hook", held_hook)])
        result = service.start(spec, listener=RunEndMonitor(store, channels))
        # the run has returned with its alert recorded, while the webhook still holds the POST
        assert result.status is RunStatus.FAILED
        assert [a.rule for a in store.alerts.list(open_only=True)] == ["failure"]
        assert HeldHook.entered.wait(30)
        [queued] = store.list_notifications()
        assert queued.state is OutboxState.PENDING
        HeldHook.release.set()
        assert wait_for_deliveries()
        [sent] = store.list_notifications()
        assert sent.state is OutboxState.DELIVERED
    finally:
        HeldHook.release.set()
        wait_for_deliveries()
        store.dispose()
