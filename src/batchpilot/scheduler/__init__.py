"""The scheduler's foundations: slot arithmetic across DST, backfill ranges, the clock.

``serve`` (a later part) claims each due slot in the state store under a unique
(pipeline, slot) key, in the transaction that creates its run (see
:mod:`batchpilot.store.schedules`).
"""

from batchpilot.scheduler.backfill import MAX_BACKFILL_SLOTS, backfill_slots
from batchpilot.scheduler.clock import Clock, FakeClock, SystemClock
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
