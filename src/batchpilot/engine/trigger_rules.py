"""Trigger rules as a pure decision over upstream states (as in Airflow)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from batchpilot.spec.model import TriggerRule
from batchpilot.states import TaskState


class Readiness(StrEnum):
    """What a pending task should do now."""

    RUN = "run"
    SKIP = "skip"
    WAIT = "wait"


_DONE = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED})
# A compensated or compensating task had succeeded before the run failed.
_SUCCEEDED = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.COMPENSATING,
        TaskState.COMPENSATED,
        TaskState.COMPENSATION_FAILED,
    }
)


def outcome_bucket(state: TaskState) -> int | None:
    """Which count an upstream state adds to: 0 succeeded, 1 failed, 2 skipped, None
    not finished."""
    if state in _SUCCEEDED:
        return 0
    if state in (TaskState.FAILED, TaskState.CANCELLED):
        return 1
    if state is TaskState.SKIPPED:
        return 2
    return None


def decide(rule: TriggerRule, upstream_states: Iterable[TaskState]) -> Readiness:
    """Decide whether a task with ``rule`` runs, is skipped, or waits.

    A task with no upstream always runs. ``skipped`` counts as neither success
    nor failure; ``cancelled`` counts as a failure. ``always`` runs at once,
    without waiting for upstream tasks, as Airflow's rule does.
    """
    states = list(upstream_states)
    counts = [0, 0, 0]
    for state in states:
        bucket = outcome_bucket(state)
        if bucket is not None:
            counts[bucket] += 1
    return decide_counts(rule, len(states), *counts)


def decide_counts(
    rule: TriggerRule, total: int, succeeded: int, failed: int, skipped: int
) -> Readiness:
    """:func:`decide` from counts of upstream outcomes, in constant time (the engine
    keeps the counts as tasks finish, so a 1,000-way fan-in is not re-scanned)."""
    if not total or rule is TriggerRule.ALWAYS:
        return Readiness.RUN
    done = succeeded + failed + skipped
    all_done = done == total

    if rule is TriggerRule.ALL_SUCCESS:
        if failed or skipped:
            return Readiness.SKIP
        return Readiness.RUN if all_done else Readiness.WAIT
    if rule is TriggerRule.ALL_FAILED:
        if succeeded or skipped:
            return Readiness.SKIP
        return Readiness.RUN if all_done else Readiness.WAIT
    if rule is TriggerRule.ALL_DONE:
        return Readiness.RUN if all_done else Readiness.WAIT
    if rule is TriggerRule.ONE_SUCCESS:
        if succeeded:
            return Readiness.RUN
        return Readiness.SKIP if all_done else Readiness.WAIT
    if rule is TriggerRule.ONE_FAILED:
        if failed:
            return Readiness.RUN
        return Readiness.SKIP if all_done else Readiness.WAIT
    if rule is TriggerRule.NONE_FAILED:
        if failed:
            return Readiness.SKIP
        return Readiness.RUN if all_done else Readiness.WAIT
    if rule is TriggerRule.NONE_SKIPPED:
        if skipped:
            return Readiness.SKIP
        return Readiness.RUN if all_done else Readiness.WAIT
    raise ValueError(f"unknown trigger rule {rule!r}")  # pragma: no cover - enum is closed


def skip_reason(rule: TriggerRule, upstream: Iterable[str], states: Mapping[str, TaskState]) -> str:
    """Why a task whose ``rule`` can no longer hold is skipped, naming its upstream states."""
    found = ", ".join(f"{parent} {states[parent].value}" for parent in upstream)
    return f"skipped: trigger rule {rule.value} cannot be met ({found})"
