"""Trigger rules decide run / skip / wait from upstream states alone."""

from __future__ import annotations

import pytest

from batchpilot.engine.trigger_rules import Readiness, decide
from batchpilot.spec import TriggerRule
from batchpilot.states import TaskState

S, F, K, P, R = (
    TaskState.SUCCESS,
    TaskState.FAILED,
    TaskState.SKIPPED,
    TaskState.PENDING,
    TaskState.RUNNING,
)
RUN, SKIP, WAIT = Readiness.RUN, Readiness.SKIP, Readiness.WAIT


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [
        (TriggerRule.ALL_SUCCESS, [S, S], RUN),
        (TriggerRule.ALL_SUCCESS, [S, P], WAIT),
        (TriggerRule.ALL_SUCCESS, [S, F], SKIP),
        (TriggerRule.ALL_SUCCESS, [R, K], SKIP),
        (TriggerRule.ALL_FAILED, [F, F], RUN),
        (TriggerRule.ALL_FAILED, [F, S], SKIP),
        (TriggerRule.ALL_FAILED, [F, R], WAIT),
        (TriggerRule.ALL_DONE, [S, F, K], RUN),
        (TriggerRule.ALL_DONE, [S, R], WAIT),
        (TriggerRule.ONE_SUCCESS, [S, R], RUN),
        (TriggerRule.ONE_SUCCESS, [F, K], SKIP),
        (TriggerRule.ONE_SUCCESS, [F, R], WAIT),
        (TriggerRule.ONE_FAILED, [F, R], RUN),
        (TriggerRule.ONE_FAILED, [S, S], SKIP),
        (TriggerRule.ONE_FAILED, [S, R], WAIT),
        (TriggerRule.NONE_FAILED, [S, K], RUN),
        (TriggerRule.NONE_FAILED, [S, F], SKIP),
        (TriggerRule.NONE_FAILED, [S, R], WAIT),
        (TriggerRule.NONE_SKIPPED, [S, F], RUN),
        (TriggerRule.NONE_SKIPPED, [S, K], SKIP),
        (TriggerRule.ALWAYS, [R, P], RUN),
    ],
)
def test_rule_decision(rule, upstream, expected):
    assert decide(rule, upstream) is expected


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_task_without_upstream_runs_whatever_its_rule(rule):
    assert decide(rule, []) is RUN


def test_cancelled_upstream_counts_as_failed():
    assert decide(TriggerRule.ONE_FAILED, [TaskState.CANCELLED]) is RUN
