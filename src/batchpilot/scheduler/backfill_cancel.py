"""``batchpilot backfill cancel ID``: stop a backfill's runs, from any process, none stranded.

The backfill is first marked ``cancel_requested`` in the store, so the process
driving it (if it still lives) starts no further run. Then each of its runs
that has not ended is stopped through the engine's cancel service: a queued
run is cancelled at once, a running one is asked to stop (its worker notices
within half a second), and one whose process is dead is cancelled directly.
The pass is repeated until the backfill has no open run for ``settle_s`` in a
row, which also catches a run its driver created just before it saw the
request.
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass, field

from batchpilot.engine import RunService
from batchpilot.errors import BatchpilotError, RunStateError
from batchpilot.settings import Settings
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.backfills import BackfillRecord, BackfillStatus, BackfillStore

#: Seconds with no open run after which the cancel is complete.
CANCEL_SETTLE_S = 1.5
#: Seconds to wait for the backfill's runs to stop before giving up (they stop later).
CANCEL_WAIT_S = 60.0


class BackfillCancelTimeout(BatchpilotError):
    """Some runs of a cancelled backfill had not stopped within the wait."""


class BackfillEnded(BatchpilotError):
    """The backfill has ended already: there is nothing to cancel."""


@dataclass
class BackfillCancelReport:
    """A cancelled backfill: the runs stopped (they were running) and cancelled (queued)."""

    record: BackfillRecord
    stopped: list[str] = field(default_factory=list)
    dequeued: list[str] = field(default_factory=list)


def cancel_backfill(
    backfill_id: str,
    *,
    settings: Settings,
    store: RunStore,
    settle_s: float = CANCEL_SETTLE_S,
    wait_s: float = CANCEL_WAIT_S,
) -> BackfillCancelReport:
    """Cancel backfill ``backfill_id`` (or a unique prefix) and every run it has not ended.

    Raises :class:`BackfillNotFound`, :class:`BackfillEnded` when it has ended
    already, :class:`BackfillCancelTimeout` when runs are still open after
    ``wait_s`` (they were asked to stop and will).
    """
    backfills = BackfillStore(store.engine)
    record = backfills.get(backfill_id)
    if record.status.is_terminal():
        raise BackfillEnded(
            f"backfill {record.backfill_id} has ended ({record.status.value}); "
            "only a running backfill can be cancelled"
        )
    backfills.request_cancel(record.backfill_id)
    service = RunService(settings=settings, store=store)
    report = BackfillCancelReport(record)
    asked: set[str] = set()
    deadline = time.monotonic() + wait_s
    quiet_since: float | None = None
    while True:
        now = time.monotonic()
        open_runs = [r for r in backfills.runs(record.backfill_id) if _is_open(r.status)]
        if not open_runs:
            quiet_since = quiet_since if quiet_since is not None else now
            if now - quiet_since >= settle_s:
                break
        else:
            quiet_since = None
            if now > deadline:
                names = ", ".join(r.run_id for r in open_runs)
                raise BackfillCancelTimeout(
                    f"backfill {record.backfill_id}: runs {names} were asked to stop but have "
                    f"not within {wait_s:g}s; they stop at their next check"
                )
            for run in open_runs:
                _stop(service, store, run.run_id, asked, report)
        time.sleep(0.2)
    backfills.set_status(record.backfill_id, BackfillStatus.CANCELLED)
    report.record = backfills.get(record.backfill_id)
    return report


def _is_open(status: RunStatus) -> bool:
    return status in (RunStatus.QUEUED, RunStatus.RUNNING)


def _stop(
    service: RunService,
    store: RunStore,
    run_id: str,
    asked: set[str],
    report: BackfillCancelReport,
) -> None:
    """Queued: cancel now. Running: ask its process once; when nobody drives it any more
    (its process died), cancel it directly."""
    run = store.get_run(run_id)
    if run.status is RunStatus.QUEUED:
        with suppress(RunStateError):  # a worker took it just now: asked to stop next pass
            service.cancel(run_id)
            report.dequeued.append(run_id)
        return
    if run_id not in asked:
        store.request_cancel(run_id)
        asked.add(run_id)
        report.stopped.append(run_id)
        return
    if run_id in {r.run_id for r in service.dead_runs()}:
        with suppress(RunStateError, BatchpilotError):
            service.cancel(run_id)


__all__ = [
    "CANCEL_SETTLE_S",
    "CANCEL_WAIT_S",
    "BackfillCancelReport",
    "BackfillCancelTimeout",
    "BackfillEnded",
    "cancel_backfill",
]
