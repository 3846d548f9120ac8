"""Evaluating the rules at a run's end: read the run and its history through the store,
decide (:mod:`batchpilot.monitor.rules`), and record the episodes and their messages
(:mod:`batchpilot.monitor.episodes`) in one transaction.

The rules come from the pipeline document stored with the run (what ran), so
``serve`` evaluates a run a worker drove exactly as ``batchpilot run`` does.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchpilot.clock import Clock
from batchpilot.monitor.episodes import EpisodeContext, plan_episodes
from batchpilot.monitor.missed_schedule import schedule_runs_again
from batchpilot.monitor.rules import (
    FailureFacts,
    Verdict,
    decide_failure,
    decide_low_volume,
    decide_rejects,
    decide_slow,
)
from batchpilot.monitor.task_deadlines import decide_task_deadlines
from batchpilot.spec.monitoring import HISTORY_RUNS, MonitoringSpec, parse_monitoring, parse_notify
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunRecord, RunStore, TaskRecord
from batchpilot.store.alerts import EpisodePlan
from batchpilot.store.run_history import PastRun

#: Failed tasks whose errors a failure alert quotes.
MAX_TASK_ERRORS = 3
#: Node types whose rows out count as rows written (``low_volume``).
LOAD_PREFIX = "load."


@dataclass(frozen=True)
class RunRules:
    """The rules and routes stored with a run, and which of its tasks are loads."""

    monitoring: MonitoringSpec
    routes: Mapping[str, Sequence[str]] | None
    loads: tuple[str, ...]
    #: the pipeline has a schedule (``missed_schedule`` applies)
    scheduled: bool = False


def rules_of(document: Mapping[str, Any]) -> RunRules:
    """The rules of a stored pipeline document (already checked when the run was created).
    Raises :class:`SpecErrors` if the document no longer reads."""
    nodes = document.get("nodes") or []
    monitoring = parse_monitoring(
        document.get("monitoring"),
        path=None,
        nodes={n["id"]: n.get("monitoring") for n in nodes},
        has_schedule=bool(document.get("schedule")),
    )
    routes = parse_notify(document.get("notify"), path=None)
    loads = tuple(
        n["id"]
        for n in nodes
        if str(n.get("type", "")).startswith(LOAD_PREFIX) and monitoring.node(n["id"]).low_volume
    )
    return RunRules(monitoring, routes, loads, scheduled=bool(document.get("schedule")))


def decide_run(
    run: RunRecord,
    tasks: Sequence[TaskRecord],
    history: Sequence[PastRun],
    rules: RunRules,
    now: datetime | None = None,
) -> list[Verdict]:
    """Every rule's verdict on an ended run (pure: records in, verdicts out; ``now`` only
    matters for a run without an end time)."""
    spec = rules.monitoring
    error = run.error or ""
    verdicts = [
        decide_failure(
            FailureFacts(
                failed=run.status is RunStatus.FAILED,
                error=run.error,
                needs_attention=run.needs_attention,
                compensation_failed=tuple(
                    t.task_id for t in tasks if t.state is TaskState.COMPENSATION_FAILED
                ),
                interrupted=error.startswith("interrupted"),
                task_errors=tuple(
                    f"{t.task_id}: {t.error}."
                    for t in tasks
                    if t.state is TaskState.FAILED and t.error
                )[:MAX_TASK_ERRORS],
            ),
            enabled=spec.failure,
        )
    ]
    if run.status is RunStatus.SUCCESS:
        past = list(history)[:HISTORY_RUNS]
        if run.started_at is not None and run.ended_at is not None:
            duration = (run.ended_at - run.started_at).total_seconds()
            verdicts.append(decide_slow(duration, [p.duration_s for p in past], spec.slow))
        for task in tasks:
            own = spec.node(task.task_id).slow
            if own is not None and task.duration_s is not None:
                durations = [
                    figures.duration_s
                    for p in past
                    if (figures := p.tasks.get(task.task_id)) and figures.duration_s is not None
                ]
                verdicts.append(decide_slow(task.duration_s, durations, own, task=task.task_id))
            verdicts.append(
                decide_rejects(
                    task.task_id,
                    task.rows_in,
                    task.rows_rejected,
                    spec.rejects_rule_of(task.task_id),
                )
            )
        if rules.loads:
            by_id = {t.task_id: t for t in tasks}
            written = sum((by_id[t].rows_out or 0) for t in rules.loads if t in by_id)
            past_written = [
                sum((p.tasks[t].rows_out or 0) for t in rules.loads)
                for p in past
                if all(t in p.tasks for t in rules.loads)
            ]
            verdicts.append(decide_low_volume(written, past_written, spec.low_volume))
        if rules.scheduled and spec.missed_schedule:
            verdicts.append(schedule_runs_again())
        ended = run.ended_at or now or datetime.now(UTC)
        verdicts += decide_task_deadlines(run, tasks, spec.task_deadlines(), ended)
    return [v for v in verdicts if v is not None]


def evaluate_run(
    store: RunStore, run_id: str, *, defined_channels: Container[str], clock: Clock
) -> EpisodePlan | None:
    """Evaluate every rule on an ended run and record what it opens, reminds and resolves,
    with the messages for the routed channels queued in the outbox.

    Returns the plan applied; None when the run has not ended, was cancelled, or this
    ending of it was evaluated already. Raises :class:`StoreError` when the store fails.
    """
    view = store.history.ended_run_view(run_id, limit=HISTORY_RUNS)
    run = view.run
    if run.status not in (RunStatus.SUCCESS, RunStatus.FAILED):
        return None
    rules = rules_of(run.spec)
    verdicts = decide_run(run, view.tasks, view.history, rules)
    ctx = EpisodeContext(
        pipeline=run.pipeline,
        run_id=run.run_id,
        now=clock.now(),
        routes=rules.routes,
        defined_channels=defined_channels,
        remind_every_s=rules.monitoring.remind_every_s,
    )
    return store.alerts.record_evaluation(
        run_id=run.run_id,
        ended_at=run.ended_at,
        pipeline=run.pipeline,
        planner=lambda open_alerts: plan_episodes(open_alerts, verdicts, ctx),
        now=ctx.now,
    )


__all__ = ["LOAD_PREFIX", "RunRules", "decide_run", "evaluate_run", "rules_of"]
