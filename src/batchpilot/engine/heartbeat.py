"""The thread that keeps a running run's heartbeat and looks for a cancel request."""

from __future__ import annotations

import threading
import time

from batchpilot.errors import BatchpilotError
from batchpilot.store import RunStore


def watch_run(
    store: RunStore,
    run_id: str,
    owner: str,
    *,
    heartbeat_s: float,
    poll_s: float,
    cancel_requested: threading.Event,
    stop: threading.Event,
) -> threading.Thread:
    """Start a daemon thread that, until ``stop`` is set, beats the run's heartbeat every
    ``heartbeat_s`` and sets ``cancel_requested`` when another process asks to cancel."""

    def watch() -> None:
        last_beat = time.monotonic()
        while not stop.wait(poll_s):
            try:
                if store.cancel_requested(run_id):
                    cancel_requested.set()
                if time.monotonic() - last_beat >= heartbeat_s:
                    store.heartbeat(run_id, owner)
                    last_beat = time.monotonic()
            except BatchpilotError:
                continue  # a busy store must not kill the run; the next beat retries

    thread = threading.Thread(target=watch, name="bp-heartbeat", daemon=True)
    thread.start()
    return thread
