"""A deliverer killed with ``kill -9`` in the middle of a send: the message still arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchpilot.clock import FakeClock
from batchpilot.notify import ChannelRegistry, deliver_due, enqueue, parse_channel
from batchpilot.store import RunStore
from batchpilot.store.outbox import OutboxState
from tests.notify.servers import WebhookServer
from tests.notify.test_http_delivery import alert

DELIVERER = textwrap.dedent(
    """
    import sys
    from batchpilot.notify import ChannelRegistry, SystemClock, deliver_due, parse_channel
    from batchpilot.store import RunStore

    store = RunStore(sys.argv[1])
    channels = ChannelRegistry([parse_channel("hook", sys.argv[2])])
    deliver_due(store, channels, SystemClock(), lease_s=60, timeout_s=60)
    """
)


@pytest.mark.slow
def test_a_send_cut_by_kill_9_is_delivered_after_the_lease_expires_with_the_same_key(
    tmp_path: Path, webhook_server: WebhookServer
):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = RunStore(url)
    clock = FakeClock(datetime.now(UTC))
    enqueue(store, alert(), ["hook"], clock)
    channel_url = f"webhook+{webhook_server.url('/hang')}"
    process = subprocess.Popen(
        [sys.executable, "-c", DELIVERER, url, channel_url],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert webhook_server.arrived.wait(60), "the deliverer never sent"
        os.kill(process.pid, signal.SIGKILL)  # mid-send: the server has not answered yet
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    (leased,) = store.list_notifications()
    assert leased.state is OutboxState.PENDING and leased.lease_owner is not None

    webhook_server.release.set()  # the receiver answers from now on
    channels = ChannelRegistry([parse_channel("hook", channel_url)])
    assert deliver_due(store, channels, clock).claimed == 0  # the dead one's lease holds
    assert leased.lease_expires_at is not None
    clock.set(leased.lease_expires_at + timedelta(seconds=1))
    assert deliver_due(store, channels, clock).delivered == 1

    (record,) = store.list_notifications()
    assert (record.state, record.attempts, record.lease_owner) == (OutboxState.DELIVERED, 1, None)
    keys = [r.headers["Idempotency-Key"] for r in webhook_server.wait_for_requests(2)]
    assert len(keys) == 2 and set(keys) == {alert().idempotency_key}
    store.dispose()


DRAINER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from batchpilot.notify import ChannelRegistry, SystemClock, deliver_due, parse_channel
    from batchpilot.store import RunStore

    store = RunStore(sys.argv[1])
    channels = ChannelRegistry([parse_channel("hook", sys.argv[2])])
    folder = Path(sys.argv[3])
    (folder / f"ready-{os.getpid()}").touch()
    while not (folder / "go").exists():  # both start draining together
        time.sleep(0.01)
    rounds = 0
    while store.outbox_backlog():
        rounds += deliver_due(store, channels, SystemClock(), limit=10).delivered > 0
    (folder / f"rounds-{os.getpid()}").write_text(str(rounds))
    """
)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_deliverer_processes_on_postgresql_send_each_message_once(
    pg_url: str, webhook_server: WebhookServer, tmp_path: Path
):
    store = RunStore(pg_url)
    clock = FakeClock(datetime.now(UTC))
    for i in range(200):
        enqueue(store, alert(f"k{i:03d}"), ["hook"], clock)
    channel_url = f"webhook+{webhook_server.url('/pg')}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", DRAINER, pg_url, channel_url, str(tmp_path)], env=env
        )
        for _ in range(2)
    ]
    try:
        while len(list(tmp_path.glob("ready-*"))) < 2 and all(p.poll() is None for p in processes):
            time.sleep(0.01)
        (tmp_path / "go").touch()
        assert [p.wait(300) for p in processes] == [0, 0]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    keys = [r.headers["Idempotency-Key"] for r in webhook_server.received]
    assert len(keys) == 200 and len(set(keys)) == 200
    assert store.outbox_counts()[OutboxState.DELIVERED] == 200
    rounds = [int(f.read_text()) for f in tmp_path.glob("rounds-*")]
    assert len(rounds) == 2 and all(n > 0 for n in rounds), rounds  # both delivered some
    store.dispose()
