"""The monitor at a run's end, for runs this process drives (``batchpilot run``, ``resume``,
``retry``): a :class:`RunListener` that evaluates the rules (a few milliseconds, in the
run's thread, so the decision is recorded with the run), then delivers what is due in
the outbox from a thread of its own, within a short deadline.

Nothing here can fail or hold up the run: the run's status is recorded before
``run_finished`` is called, every error is logged in one line and swallowed, and
delivery is off the run's path (a channel that is down costs the run nothing).
The CLI waits for the deliveries (:func:`wait_for_deliveries`, bounded by their
deadline) after it has printed the run's result, before the process exits; what is
left is retried by ``serve`` or the next run's end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Container

from batchpilot.engine import RunListener
from batchpilot.errors import first_line
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.notify import ChannelRegistry, Clock, DeliveryReport, SystemClock, deliver_due
from batchpilot.states import RunStatus
from batchpilot.store import RunStore

log = logging.getLogger("batchpilot.monitor")

#: How long a run's end spends delivering notifications at most.
DRAIN_DEADLINE_S = 5.0
#: The longest one send may take at a run's end (a channel that is down costs this once).
DRAIN_SEND_TIMEOUT_S = 3.0

_deliveries: list[threading.Thread] = []
_deliveries_lock = threading.Lock()


def drain_outbox(
    store: RunStore,
    channels: ChannelRegistry,
    clock: Clock,
    *,
    deadline_s: float = DRAIN_DEADLINE_S,
    timeout_s: float = DRAIN_SEND_TIMEOUT_S,
) -> DeliveryReport:
    """Deliver due messages in rounds until none is due or ``deadline_s`` has passed.
    Raises :class:`StoreError` when the store fails."""
    report = DeliveryReport()
    if not len(channels):
        return report
    ends = time.monotonic() + deadline_s
    while (left := ends - time.monotonic()) > 0:
        round_report = deliver_due(
            store, channels, clock, timeout_s=min(timeout_s, left), lease_s=max(2 * left, 10.0)
        )
        report = report + round_report
        if round_report.claimed == 0 or round_report.delivered == 0:
            break
    return report


def monitor_run_end(
    store: RunStore,
    run_id: str,
    *,
    channels: ChannelRegistry,
    clock: Clock,
    defined: Container[str] | None = None,
    deliver: bool = True,
) -> None:
    """Evaluate the rules on an ended run, then deliver what is due from a thread of its own
    (see :func:`wait_for_deliveries`); never raises (each failure is logged in one line)."""
    try:
        evaluate_run(store, run_id, defined_channels=defined or channels, clock=clock)
    except Exception as exc:  # a monitor failure must never fail a run
        log.warning("alert rules not evaluated for run %s: %s", run_id, first_line(exc))
    if deliver and len(channels):
        thread = threading.Thread(
            target=_deliver, args=(store, channels, clock, run_id), name=f"deliver-{run_id}"
        )
        with _deliveries_lock:
            _deliveries.append(thread)
        thread.start()


def _deliver(store: RunStore, channels: ChannelRegistry, clock: Clock, run_id: str) -> None:
    try:
        drain_outbox(store, channels, clock)
    except Exception as exc:  # nor may a notification failure
        log.warning("notifications not delivered at the end of run %s: %s", run_id, first_line(exc))


def wait_for_deliveries(timeout_s: float = DRAIN_DEADLINE_S + DRAIN_SEND_TIMEOUT_S) -> bool:
    """Wait for the deliveries run ends of this process started (at most ``timeout_s`` in
    all); True when none is left. A process calls it before it exits, after the run."""
    ends = time.monotonic() + timeout_s
    with _deliveries_lock:
        pending = list(_deliveries)
    for thread in pending:
        thread.join(max(0.0, ends - time.monotonic()))
    with _deliveries_lock:
        _deliveries[:] = [t for t in _deliveries if t.is_alive()]
        return not _deliveries


class RunEndMonitor(RunListener):
    """Evaluates the rules when the run this process drives ends (not when interrupted:
    the run is resumable and a person stopped it), and starts delivering."""

    def __init__(
        self, store: RunStore, channels: ChannelRegistry, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock or SystemClock()

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """Evaluate, and deliver off the run's path; never raises."""
        monitor_run_end(self.store, run_id, channels=self.channels, clock=self.clock)


__all__ = [
    "DRAIN_DEADLINE_S",
    "RunEndMonitor",
    "drain_outbox",
    "monitor_run_end",
    "wait_for_deliveries",
]
