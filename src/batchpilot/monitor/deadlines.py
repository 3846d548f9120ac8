"""The ``deadline`` rule: a scheduled pipeline's slot must have succeeded by a time of day.

``deadline: "06:00"`` is read in the schedule's time zone. At each deadline
instant D, the slot that must be done is the latest slot at or before D; the
rule fires when that slot's run has not succeeded by D: it never started (no
run, or still queued), or it is still running. It fires when nothing started
at all, and, when ``serve`` was down at D, on its first check after it is back
(marked "missed while serve was down"; unless the pipeline was never scheduled
before, so a pipeline new to ``serve`` is not blamed for yesterday). A slot whose run failed gets no
deadline alert: its ``failure`` alert says it already (one alert, not two). A
run that succeeds after the deadline resolves the episode with a recovery
notice.

:func:`decide_deadline` is the pure decision; :class:`DeadlineWatch` runs it on
a clock inside ``serve`` for every pipeline with a deadline. :class:`TaskDeadlineWatch`
does the same for the task-level ``deadline: 20m`` of running runs
(:mod:`batchpilot.monitor.task_deadlines`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from batchpilot.clock import Clock
from batchpilot.errors import first_line
from batchpilot.monitor.episodes import EpisodeContext, episode_key, plan_episodes
from batchpilot.monitor.evaluate import RunRules, rules_of
from batchpilot.monitor.rules import Verdict
from batchpilot.monitor.task_deadlines import decide_task_deadlines
from batchpilot.notify.message import Severity
from batchpilot.scheduler.slots import latest_slot
from batchpilot.spec.local_time import resolve_wall_time
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus
from batchpilot.store import RunRecord, RunStore
from batchpilot.store.alerts import AlertRecord, EpisodePlan

log = logging.getLogger("batchpilot.monitor")

_ONE_MICROSECOND = timedelta(microseconds=1)
#: Verdicts remembered this long (a deadline is checked again only while it is the latest).
_FORGET_AFTER = timedelta(days=3)


def latest_deadline(deadline: time, zone: tzinfo, now: datetime) -> datetime:
    """The last instant at or before ``now`` whose wall time in ``zone`` is ``deadline``
    (aware, UTC); a deadline inside a DST gap is the instant the clocks jumped."""
    local_day = now.astimezone(zone).date()
    for days_back in (0, 1, 2):
        day = local_day - timedelta(days=days_back)
        instant = resolve_wall_time(datetime.combine(day, deadline), zone)
        if instant <= now:
            return instant
    raise AssertionError("a wall time recurs within two days")  # pragma: no cover


@dataclass(frozen=True)
class SlotOutcome:
    """Where the slot due by a deadline stands: its run's status (None: no run) and end."""

    slot: datetime
    run_id: str | None = None
    status: RunStatus | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


def decide_deadline(
    outcome: SlotOutcome,
    *,
    deadline_at: datetime,
    zone: tzinfo,
    zone_name: str,
    missed_while_down: bool = False,
) -> Verdict | None:
    """The deadline verdict for one slot (see the module); None when its run failed or was
    cancelled (the failure rule speaks for it)."""

    def local(instant: datetime) -> str:
        return instant.astimezone(zone).strftime("%H:%M")

    slot_words = outcome.slot.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    baseline = f"the run of the {slot_words} slot"
    threshold = f"succeeded by {local(deadline_at)} ({zone_name})"
    if outcome.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        return None
    if outcome.status is RunStatus.SUCCESS:
        ended = outcome.ended_at or deadline_at
        observed = f"succeeded at {local(ended)}"
        return Verdict("deadline", False, observed, baseline, threshold, "")
    if outcome.status is RunStatus.RUNNING and outcome.started_at is not None:
        observed = f"still running (started at {local(outcome.started_at)})"
    elif outcome.status in (RunStatus.RUNNING, RunStatus.QUEUED):
        observed = "queued, not started"
    else:
        observed = "never started"
    if missed_while_down:
        observed += " (missed while serve was down)"
    summary = (
        f"The run of the {slot_words} slot had not succeeded by the {local(deadline_at)} "
        f"deadline ({zone_name}): {observed}."
    )
    return Verdict(
        "deadline", True, observed, baseline, threshold, summary, severity=Severity.CRITICAL
    )


class DeadlineWatch:
    """Checks every pipeline's deadline on each call of :meth:`check` (``serve``'s monitor
    loop calls it every few seconds). A deadline's verdict is recorded when it changes, so
    an open episode is not counted again at every check."""

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
        self.started_at = clock.now()
        self._recorded: dict[tuple[str, datetime], bool] = {}

    def check(self) -> list[Verdict]:
        """Check each pipeline with a deadline; returns the verdicts recorded this time."""
        recorded = []
        for spec in list(self.pipelines().values()):
            if spec.schedule is None or spec.monitoring.deadline is None:
                continue
            try:
                verdict = self.check_pipeline(spec)
            except Exception as exc:  # one pipeline's check must not stop the others
                log.warning("deadline of %s not checked: %s", spec.name, first_line(exc))
                continue
            if verdict is not None:
                recorded.append(verdict)
        return recorded

    def check_pipeline(self, spec: PipelineSpec) -> Verdict | None:
        """Decide the pipeline's latest deadline; record the verdict if it changed."""
        schedule, deadline = spec.schedule, spec.monitoring.deadline
        assert schedule is not None and deadline is not None
        now = self.clock.now()
        deadline_at = latest_deadline(deadline, schedule.zone, now)
        slot = latest_slot(schedule, deadline_at)
        if slot is None:
            return None
        outcome = self._outcome(spec.name, slot.at)
        missed_while_down = self.started_at > deadline_at
        if missed_while_down and outcome.run_id is None and not self._was_scheduled(spec.name):
            return None  # a pipeline new to serve: nothing was due before it came
        verdict = decide_deadline(
            outcome,
            deadline_at=deadline_at,
            zone=schedule.zone,
            zone_name=schedule.timezone,
            missed_while_down=missed_while_down,
        )
        key = (spec.name, deadline_at)
        if verdict is None or self._recorded.get(key) == verdict.fired:
            return None
        ctx = EpisodeContext(
            pipeline=spec.name,
            run_id=outcome.run_id,
            now=now,
            routes=spec.notify,
            defined_channels=self.defined_channels,
            remind_every_s=spec.monitoring.remind_every_s,
            occasion=deadline_at.isoformat(),
        )
        self.store.alerts.record_evaluation(
            run_id=None,
            ended_at=None,
            pipeline=spec.name,
            planner=lambda open_alerts: plan_episodes(open_alerts, [verdict], ctx),
            now=now,
        )
        self._recorded[key] = verdict.fired
        for old in [k for k in self._recorded if k[1] < now - _FORGET_AFTER]:
            del self._recorded[old]
        return verdict

    def _was_scheduled(self, pipeline: str) -> bool:
        return self.store.schedules.schedule_state(pipeline).last_slot is not None

    def _outcome(self, pipeline: str, slot: datetime) -> SlotOutcome:
        claims = self.store.schedules.slot_claims(pipeline, start=slot, end=slot + _ONE_MICROSECOND)
        if not claims:
            return SlotOutcome(slot)
        run = self.store.get_run(claims[0].run_id)
        return SlotOutcome(slot, run.run_id, run.status, run.started_at, run.ended_at)


class TaskDeadlineWatch:
    """Checks the task deadlines of running runs on each call of :meth:`check` (``serve``'s
    monitor loop calls it every few seconds). A (run, task) is recorded once per process,
    and a deadline whose episode is open already is left alone (no reminder counted)."""

    def __init__(self, store: RunStore, clock: Clock, defined_channels: Container[str]) -> None:
        self.store = store
        self.clock = clock
        self.defined_channels = defined_channels
        self._rules: dict[str, RunRules] = {}
        self._recorded: set[tuple[str, str]] = set()

    def check(self) -> list[Verdict]:
        """Check every running run's task deadlines; returns the verdicts that fired now."""
        fired: list[Verdict] = []
        running = self.store.runs_in_status([RunStatus.RUNNING])
        for run in running:
            try:
                fired += self.check_run(run)
            except Exception as exc:  # one run's check must not stop the others
                log.warning("task deadlines of run %s not checked: %s", run.run_id, first_line(exc))
        alive = {run.run_id for run in running}
        self._rules = {k: v for k, v in self._rules.items() if k in alive}
        self._recorded = {k for k in self._recorded if k[0] in alive}
        return fired

    def check_run(self, run: RunRecord) -> list[Verdict]:
        """Fire the run's passed task deadlines not fired yet; returns them."""
        rules = self._rules.get(run.run_id)
        if rules is None:
            rules = self._rules[run.run_id] = rules_of(run.spec)
        deadlines = rules.monitoring.task_deadlines()
        now = self.clock.now()
        if not deadlines or run.started_at is None:
            return []
        first = min(deadlines.values())
        if (now - run.started_at).total_seconds() <= first:
            return []  # nothing can be late yet: no query
        tasks = self.store.get_tasks(run.run_id)
        verdicts = [
            v
            for v in decide_task_deadlines(run, tasks, deadlines, now)
            if v.fired and (run.run_id, v.task or "") not in self._recorded
        ]
        if not verdicts:
            return []
        ctx = EpisodeContext(
            pipeline=run.pipeline,
            run_id=run.run_id,
            now=now,
            routes=rules.routes,
            defined_channels=self.defined_channels,
            remind_every_s=rules.monitoring.remind_every_s,
        )

        def planner(open_alerts: list[AlertRecord]) -> EpisodePlan:
            open_keys = {alert.episode_key for alert in open_alerts}
            new = [
                v for v in verdicts if episode_key(run.pipeline, v.rule, v.task) not in open_keys
            ]
            return plan_episodes(open_alerts, new, ctx)

        self.store.alerts.record_evaluation(
            run_id=None, ended_at=None, pipeline=run.pipeline, planner=planner, now=now
        )
        self._recorded.update((run.run_id, v.task or "") for v in verdicts)
        return verdicts


__all__ = [
    "DeadlineWatch",
    "SlotOutcome",
    "TaskDeadlineWatch",
    "decide_deadline",
    "latest_deadline",
]
