"""The transition policy as a table: how an attempt ended → what the task becomes, and
every effect that goes with it (retry timer, callbacks, group roll-back, dirty children)."""

from __future__ import annotations

import pytest

from batchpilot.engine.handles import StopReason
from batchpilot.engine.transitions import (
    CANCELLED_WHILE_RUNNING,
    AttemptEnd,
    CallbackDue,
    GroupView,
    after_attempt,
    cancel_waiting,
    group_commits_now,
    when_ready_to_decide,
)
from batchpilot.engine.trigger_rules import Readiness
from batchpilot.errors import PermanentStepError, StepError
from batchpilot.spec import RetryPolicy
from batchpilot.spec.model import TriggerRule
from batchpilot.states import TaskState

CHILDREN = {"a": ["b", "c"], "b": [], "c": [], "g1": [], "g2": ["after"], "after": []}
TWO_RETRIES = RetryPolicy(retries=2, retry_delay_s=10, jitter=False)
S, F, R, C = TaskState.SUCCESS, TaskState.FAILED, TaskState.RETRY, TaskState.CANCELLED


def delay_of(policy: RetryPolicy, attempt: int) -> float:
    """A deterministic delay: the policy's base times the attempt number."""
    return policy.retry_delay_s * attempt


def decide(end: AttemptEnd, *, retry: RetryPolicy = TWO_RETRIES, group: GroupView | None = None):
    return after_attempt(
        end,
        retry=retry,
        timeout_s=0.5,
        group=group,
        children=CHILDREN,
        retry_delay=delay_of,
        redact=lambda text: text.replace("s3cret", "***"),
    )


# (how the attempt ended, attempt number) -> (task state, attempt state, error, retry in s)
OUTCOMES = [
    pytest.param(None, None, 1, S, S, None, None, id="returned: success"),
    pytest.param(None, StopReason.TIMEOUT, 1, S, S, None, None, id="returned as it timed out"),
    pytest.param(StepError("boom"), None, 1, R, F, "boom", 10.0, id="first failure: retry"),
    pytest.param(StepError("boom"), None, 2, R, F, "boom", 20.0, id="second failure: retry"),
    pytest.param(StepError("boom"), None, 3, F, F, "boom", None, id="retries spent: failed"),
    pytest.param(
        PermanentStepError("bad rows"), None, 1, F, F, "bad rows", None, id="permanent: no retry"
    ),
    pytest.param(KeyError("k"), None, 1, R, F, "KeyError: 'k'", 10.0, id="any exception: retried"),
    pytest.param(
        StepError("x"), StopReason.TIMEOUT, 1, R, F, "timed out after 0.5s", 10.0, id="timeout"
    ),
    pytest.param(
        StepError("x"), StopReason.CANCEL, 1, C, C, CANCELLED_WHILE_RUNNING, None, id="cancel"
    ),
    pytest.param(StepError("x"), StopReason.INTERRUPT, 3, F, F, "x", None, id="interrupted, spent"),
    pytest.param(None, StopReason.INTERRUPT, 3, F, F, "stopped", None, id="stopped, no error"),
    pytest.param(
        StepError("login s3cret refused\nat line 2"),
        None,
        3,
        F,
        F,
        "login *** refused",
        None,
        id="one line, redacted",
    ),
]


@pytest.mark.parametrize(
    ("error", "stop", "attempt", "state", "attempt_state", "message", "retry_in"), OUTCOMES
)
def test_an_ended_attempt_moves_its_task(
    error, stop, attempt, state, attempt_state, message, retry_in
):
    transition = decide(AttemptEnd("a", attempt, error, stop))

    assert (transition.state, transition.attempt_state) == (state, attempt_state)
    assert (transition.error, transition.retry_in_s) == (message, retry_in)
    assert transition.rolled_back_group is None


@pytest.mark.parametrize(
    ("error", "stop", "dirty"),
    [
        (None, None, ("b", "c")),
        (StepError("boom"), None, ()),  # a retry is not terminal: children keep waiting
        (PermanentStepError("bad"), None, ("b", "c")),
        (StepError("x"), StopReason.CANCEL, ("b", "c")),
    ],
)
def test_children_are_looked_at_again_once_a_task_is_terminal(error, stop, dirty):
    assert decide(AttemptEnd("a", 1, error, stop)).dirty == dirty


@pytest.mark.parametrize(
    ("error", "stop", "attempt", "event"),
    [
        (None, None, 1, "on_success"),
        (StepError("boom"), None, 1, "on_retry"),
        (StepError("boom"), None, 3, "on_failure"),
        (StepError("x"), StopReason.CANCEL, 1, None),
    ],
)
def test_each_transition_queues_its_callback_event(error, stop, attempt, event):
    transition = decide(AttemptEnd("a", attempt, error, stop))
    events = [due.event for due in transition.callbacks]
    assert events == ([event] if event else [])
    if event:
        (due,) = transition.callbacks
        assert (due.task_id, due.attempt, due.state) == ("a", attempt, transition.state)


GROUP = GroupView("g", ("g1", "g2"), succeeded=frozenset({"g1"}), attempts={"g1": 1, "g2": 2})


def test_only_the_last_members_success_commits_the_group():
    assert group_commits_now(AttemptEnd("g2", 2), GROUP)
    assert not group_commits_now(AttemptEnd("g1", 1), GROUP)
    assert not group_commits_now(AttemptEnd("g2", 2, StepError("x")), GROUP)
    assert not group_commits_now(AttemptEnd("g2", 2), None)


def test_a_groups_on_success_callbacks_are_queued_once_by_its_last_member():
    assert decide(AttemptEnd("g1", 1), group=GROUP).callbacks == ()
    assert decide(AttemptEnd("g2", 2), group=GROUP).callbacks == (
        CallbackDue("on_success", "g1", 1, None, S),
        CallbackDue("on_success", "g2", 2, None, S),
    )


@pytest.mark.parametrize(
    ("error", "stop", "attempt", "rolled_back"),
    [
        (PermanentStepError("bad"), None, 1, True),
        (StepError("x"), StopReason.CANCEL, 1, True),
        (StepError("boom"), None, 1, False),  # a retry of the member keeps the group open
        (None, None, 1, False),
    ],
)
def test_a_member_that_fails_for_good_rolls_its_group_back(error, stop, attempt, rolled_back):
    transition = decide(AttemptEnd("g2", attempt, error, stop), group=GROUP)

    if not rolled_back:
        assert transition.rolled_back_group is None and transition.undone_members == ()
        return
    assert transition.rolled_back_group == "g"
    assert transition.undone_members == ("g1",)  # it had succeeded: nothing of it remains
    assert transition.undone_error == "rolled back: transaction group 'g' failed at 'g2'"
    assert set(transition.dirty) == {"after"}


@pytest.mark.parametrize(
    ("rule", "counts", "readiness"),
    [
        (TriggerRule.ALL_SUCCESS, (2, 0, 0), Readiness.RUN),
        (TriggerRule.ALL_SUCCESS, (1, 0, 0), Readiness.WAIT),
        (TriggerRule.ALL_SUCCESS, (1, 1, 0), Readiness.SKIP),
        (TriggerRule.ONE_FAILED, (1, 1, 0), Readiness.RUN),
        (TriggerRule.ALL_DONE, (0, 1, 1), Readiness.RUN),
        (TriggerRule.NONE_SKIPPED, (1, 0, 1), Readiness.SKIP),
    ],
)
def test_a_pending_task_runs_waits_or_is_skipped_by_its_upstream_counts(rule, counts, readiness):
    states = {"a": S, "x": F if counts[1] else S}
    decision = when_ready_to_decide(
        "c", rule=rule, upstream=["a", "x"], counts=counts, states=states, children=CHILDREN
    )
    assert decision.readiness is readiness
    if readiness is Readiness.SKIP:
        assert decision.reason is not None
        assert decision.reason.startswith(f"skipped: trigger rule {rule.value} cannot be met")


def test_a_cancel_request_cancels_the_tasks_waiting_to_start_or_retry():
    states = {"a": TaskState.RUNNING, "b": TaskState.PENDING, "c": R, "d": S, "e": F}
    assert cancel_waiting(states) == ["b", "c"]
