"""The ``missed_schedule`` rule: slots the scheduler did not run because ``serve`` was down
(or the schedule paused, the machine asleep).

When the scheduler comes back it leaves one "missed while down" record per
catch-up (``store.schedules.missed_slots``), whatever the ``catchup`` policy.
The monitor turns each record into one alert, once (the record is marked in
the transaction that opens the episode), keyed (pipeline, ``missed_schedule``)
and routed through ``notify:`` like the other rules. While it is open, another
record counts as an occurrence; the pipeline's next successful run closes it
with one recovery notice. ``monitoring: {missed_schedule: false}`` leaves the
records unalerted for that pipeline.

:func:`decide_missed_schedule` is the pure decision; :class:`MissedScheduleWatch`
runs it inside ``serve``'s monitor loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Mapping
from datetime import UTC, tzinfo

from batchpilot.clock import Clock
from batchpilot.errors import first_line
from batchpilot.monitor.episodes import EpisodeContext, plan_episodes
from batchpilot.monitor.rules import Verdict
from batchpilot.notify.message import Severity
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore
from batchpilot.store.schedule_records import MissedSlotsRecord

log = logging.getLogger("batchpilot.monitor")

#: Slots an alert names at most (the count says how many there were).
LISTED_SLOTS = 5
_BASELINE = "every slot of the schedule runs"
_THRESHOLD = "any slot missed"
_CATCHUP_WORDS = {
    "all": "each of them runs now (catchup: all)",
    "last": "only the latest of them runs (catchup: last)",
    "none": "none of them will run (catchup: none)",
}


def decide_missed_schedule(
    record: MissedSlotsRecord, *, zone: tzinfo = UTC, zone_name: str = "UTC"
) -> Verdict:
    """The alert for one "missed while down" record: how many slots, the first few of them
    in the schedule's time zone, and what the ``catchup`` policy does about them."""
    shown = [s.astimezone(zone).strftime("%Y-%m-%d %H:%M") for s in record.slots[:LISTED_SLOTS]]
    more = record.slot_count - len(shown)
    listed = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    plural = "s" if record.slot_count != 1 else ""
    observed = f"{record.slot_count} slot{plural} missed ({zone_name}): {listed}"
    catchup = _CATCHUP_WORDS.get(record.catchup, f"catchup: {record.catchup}")
    detected = record.detected_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    summary = (
        f"The scheduler found {record.slot_count} slot{plural} missed while serve was down "
        f"when it came back at {detected} ({zone_name}): {listed}; {catchup}."
    )
    return Verdict(
        "missed_schedule", True, observed, _BASELINE, _THRESHOLD, summary, severity=Severity.WARNING
    )


def schedule_runs_again() -> Verdict:
    """A scheduled pipeline's successful run: the schedule works again (closes the episode)."""
    return Verdict("missed_schedule", False, "a run succeeded", _BASELINE, _THRESHOLD, "")


class MissedScheduleWatch:
    """Alerts on each "missed while down" record once (``serve``'s monitor loop calls
    :meth:`check` every few seconds); routes come from the pipeline as ``serve`` knows it."""

    def __init__(
        self,
        store: RunStore,
        clock: Clock,
        pipelines: Callable[[], Mapping[str, PipelineSpec]],
        defined_channels: Container[str],
    ) -> None:
        self.store = store
        self.clock = clock
        self.pipelines = pipelines
        self.defined_channels = defined_channels

    def check(self) -> list[Verdict]:
        """Alert on the records not alerted yet; returns the verdicts that opened or counted."""
        recorded = []
        specs = self.pipelines()
        for record in self.store.schedules.missed_slots_to_alert():
            try:
                verdict = self.check_record(record, specs.get(record.pipeline))
            except Exception as exc:  # one record must not stop the others
                log.warning("missed slots of %s not alerted: %s", record.pipeline, first_line(exc))
                continue
            if verdict is not None:
                recorded.append(verdict)
        return recorded

    def check_record(self, record: MissedSlotsRecord, spec: PipelineSpec | None) -> Verdict | None:
        """Record the alert of one record (nothing but the mark when the rule is off)."""
        now = self.clock.now()
        enabled = spec is None or spec.monitoring.missed_schedule
        schedule = spec.schedule if spec is not None else None
        verdict = (
            decide_missed_schedule(
                record,
                zone=schedule.zone if schedule else UTC,
                zone_name=schedule.timezone if schedule else "UTC",
            )
            if enabled
            else None
        )
        ctx = EpisodeContext(
            pipeline=record.pipeline,
            run_id=None,
            now=now,
            routes=spec.notify if spec is not None else None,
            defined_channels=self.defined_channels,
            remind_every_s=spec.monitoring.remind_every_s if spec is not None else None,
            occasion=f"missed-slots-{record.id}",
        )
        verdicts = [verdict] if verdict is not None else []
        plan = self.store.alerts.record_missed_slots_alert(
            record.id,
            pipeline=record.pipeline,
            planner=lambda open_alerts: plan_episodes(open_alerts, verdicts, ctx),
            now=now,
        )
        return verdict if plan is not None else None


__all__ = ["MissedScheduleWatch", "decide_missed_schedule", "schedule_runs_again"]
