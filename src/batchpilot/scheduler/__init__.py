"""The scheduler: slot arithmetic across DST, backfill ranges, the clock, and ``serve``.

``serve`` claims each due slot in the state store under a unique (pipeline,
slot) key, in the transaction that creates its run (see
:mod:`batchpilot.store.schedules`). Its parts, one job each:

- :mod:`~batchpilot.scheduler.catalog`: the pipeline files under a folder, re-read
  when they change; a broken file keeps its last valid version;
- :mod:`~batchpilot.scheduler.policies`: pure decisions (due slots, catchup,
  overlap, room for a run);
- :mod:`~batchpilot.scheduler.tick`: one pass of (pipelines, store, clock);
- :mod:`~batchpilot.scheduler.supervisor` and :mod:`~batchpilot.scheduler.worker`:
  runs in worker processes, at most N at once (shared with ``backfill``), forked
  warm by :mod:`~batchpilot.scheduler.warm_workers`;
- :mod:`~batchpilot.scheduler.components`: what ``serve``'s components share (context,
  options) and how one starts and stops;
- :mod:`~batchpilot.scheduler.dispatcher`: queued runs to worker processes;
- :mod:`~batchpilot.scheduler.serve`: the process (scheduler loop, retention, recovery);
- :mod:`~batchpilot.scheduler.describe`: what ``pipelines list`` shows.
"""

from batchpilot.clock import Clock, FakeClock, SystemClock
from batchpilot.scheduler.backfill import MAX_BACKFILL_SLOTS, backfill_slots
from batchpilot.scheduler.cron import is_interval_hour_field
from batchpilot.scheduler.jitter import jitter_delay
from batchpilot.scheduler.slots import Slot, iter_slots, latest_slot, next_slot, slots_between

__all__ = [
    "MAX_BACKFILL_SLOTS",
    "Clock",
    "FakeClock",
    "Slot",
    "SystemClock",
    "backfill_slots",
    "is_interval_hour_field",
    "iter_slots",
    "jitter_delay",
    "latest_slot",
    "next_slot",
    "slots_between",
]
