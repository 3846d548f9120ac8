"""The transition policy: what happens to a task, as pure functions of its state.

Nothing here touches the store, a thread or the clock. :class:`RunExecutor`
asks these functions what to do and carries it out (writes the store, queues
the callbacks, rolls the group back, re-evaluates the children), so every
rule of the state machine can be read, and tested as a table, in one place:

- :func:`after_attempt` — an attempt ended: success, retry (and when), failure,
  or cancel; which callbacks that queues; whether an atomic group rolls back.
- :func:`group_commits_now` — whether the attempt's success is what commits its
  atomic group (the executor commits before it records the success).
- :func:`when_ready_to_decide` — a pending task's trigger rule from its upstream
  counts: run, wait, or skip (with the reason and the children to look at).
- :func:`cancel_waiting` — a cancel request: which tasks are cancelled before
  they start.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from batchpilot.engine.handles import StopReason
from batchpilot.engine.retry import should_retry
from batchpilot.engine.trigger_rules import Readiness, decide_counts, skip_reason
from batchpilot.errors import StepError, first_line
from batchpilot.spec.model import RetryPolicy, TriggerRule
from batchpilot.states import TaskState

#: the callback event a task's own transition queues, by its new state
CALLBACK_EVENTS: Mapping[TaskState, str] = {
    TaskState.SUCCESS: "on_success",
    TaskState.FAILED: "on_failure",
    TaskState.RETRY: "on_retry",
}
CANCELLED_WHILE_RUNNING = "cancelled while running"
CANCELLED_BEFORE_START = "cancelled before it started"


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as the policy needs it."""

    task_id: str
    attempt: int
    #: what the step raised (or the group's failed commit); None when it returned
    error: BaseException | None = None
    #: why the engine stopped it, if it did
    stop_reason: StopReason | None = None

    @property
    def succeeded(self) -> bool:
        """True when the step returned (a timeout that landed after it returned counts)."""
        return self.error is None and self.stop_reason in (None, StopReason.TIMEOUT)


@dataclass(frozen=True)
class GroupView:
    """The atomic group a task belongs to, as the policy needs it."""

    name: str
    members: tuple[str, ...]
    #: the members that have succeeded so far (their changes are not committed yet)
    succeeded: frozenset[str] = frozenset()
    #: each member's latest attempt number
    attempts: Mapping[str, int] = field(default_factory=dict)

    @property
    def last(self) -> str:
        """The member after which the group commits."""
        return self.members[-1]


@dataclass(frozen=True)
class CallbackDue:
    """A callback event a transition queues for one task's attempt."""

    event: str
    task_id: str
    attempt: int
    error: str | None
    state: TaskState


@dataclass(frozen=True)
class Transition:
    """The next state of a task after an attempt, and every effect that goes with it."""

    task_id: str
    attempt: int
    #: the task's new state, and the state its attempt is recorded with
    state: TaskState
    attempt_state: TaskState
    #: the one-line reason recorded (None on success)
    error: str | None = None
    #: the task runs again after this many seconds (state ``retry``)
    retry_in_s: float | None = None
    #: callbacks to queue in the same store transaction
    callbacks: tuple[CallbackDue, ...] = ()
    #: the atomic group to roll back, and its members that succeeded and now fail
    rolled_back_group: str | None = None
    undone_members: tuple[str, ...] = ()
    undone_error: str | None = None
    #: tasks whose trigger rule must be evaluated again
    dirty: tuple[str, ...] = field(default_factory=tuple)

    @property
    def succeeded(self) -> bool:
        """True when the attempt's output is recorded."""
        return self.state is TaskState.SUCCESS


def group_commits_now(end: AttemptEnd, group: GroupView | None) -> bool:
    """True when this attempt's success commits its atomic group: it is the group's last
    member and it succeeded. The executor commits *before* it records the success; a
    failed commit is then the attempt's error (a :class:`PermanentStepError`)."""
    return group is not None and end.task_id == group.last and end.succeeded


def after_attempt(
    end: AttemptEnd,
    *,
    retry: RetryPolicy,
    timeout_s: float | None,
    group: GroupView | None,
    children: Mapping[str, Sequence[str]],
    retry_delay: Callable[[RetryPolicy, int], float],
    redact: Callable[[str], str] = str,
) -> Transition:
    """The transition of ``end.task_id`` after its attempt ``end.attempt`` ended.

    Success is recorded (in a group: its members' ``on_success`` are queued only
    by the last member, once the group committed). A cancelled attempt cancels
    the task. A failure or timeout is retried after ``retry_delay(policy, attempt)``
    seconds while ``retry`` allows, else fails the task; a task of an atomic group
    that fails or is cancelled rolls the group back, failing its members that had
    succeeded. Children of a task that reached a terminal state are dirty.
    """
    if end.succeeded:
        state, attempt_state, error, delay = TaskState.SUCCESS, TaskState.SUCCESS, None, None
    elif end.stop_reason is StopReason.CANCEL:
        state, attempt_state = TaskState.CANCELLED, TaskState.CANCELLED
        error, delay = CANCELLED_WHILE_RUNNING, None
    else:
        failure = end.error or StepError("stopped")
        if end.stop_reason is StopReason.TIMEOUT:
            failure = StepError(f"timed out after {timeout_s:g}s")
        error = redact(first_line(failure))
        if should_retry(retry, end.attempt, failure):
            state, delay = TaskState.RETRY, retry_delay(retry, end.attempt)
        else:
            state, delay = TaskState.FAILED, None
        attempt_state = TaskState.FAILED
    callbacks = _callbacks_due(end, state, error, group)
    dirty = list(children[end.task_id]) if state.is_terminal() else []
    undone: tuple[str, ...] = ()
    undone_error = None
    rolled_back = None
    if group is not None and state in (TaskState.FAILED, TaskState.CANCELLED):
        rolled_back = group.name
        undone = tuple(m for m in group.members if m in group.succeeded)
        undone_error = f"rolled back: transaction group '{group.name}' failed at '{end.task_id}'"
        for member in undone:
            dirty += children[member]
    return Transition(
        task_id=end.task_id,
        attempt=end.attempt,
        state=state,
        attempt_state=attempt_state,
        error=error,
        retry_in_s=delay,
        callbacks=callbacks,
        rolled_back_group=rolled_back,
        undone_members=undone,
        undone_error=undone_error,
        dirty=tuple(dirty),
    )


def _callbacks_due(
    end: AttemptEnd, state: TaskState, error: str | None, group: GroupView | None
) -> tuple[CallbackDue, ...]:
    event = CALLBACK_EVENTS.get(state)
    if event is None:
        return ()
    if group is not None and state is TaskState.SUCCESS:
        # A member's success is real only once its group commits: then every member's
        # on_success is queued, once.
        if end.task_id != group.last:
            return ()
        return tuple(
            CallbackDue(event, member, group.attempts.get(member, 0), None, state)
            for member in group.members
        )
    return (CallbackDue(event, end.task_id, end.attempt, error, state),)


@dataclass(frozen=True)
class PendingDecision:
    """What a pending task does now that its upstream changed."""

    readiness: Readiness
    #: for a skip: the recorded reason, and the children to evaluate next
    reason: str | None = None
    dirty: tuple[str, ...] = ()


def when_ready_to_decide(
    task_id: str,
    *,
    rule: TriggerRule,
    upstream: Sequence[str],
    counts: Sequence[int],
    states: Mapping[str, TaskState],
    children: Mapping[str, Sequence[str]],
) -> PendingDecision:
    """A pending task's trigger rule over its upstream ``counts`` (succeeded, failed,
    skipped): run now, wait, or be skipped (naming the upstream states that rule it out)."""
    succeeded, failed, skipped = counts
    verdict = decide_counts(rule, len(upstream), succeeded, failed, skipped)
    if verdict is not Readiness.SKIP:
        return PendingDecision(verdict)
    reason = skip_reason(rule, upstream, states)
    return PendingDecision(Readiness.SKIP, reason, tuple(children[task_id]))


def cancel_waiting(states: Mapping[str, TaskState]) -> list[str]:
    """The tasks a cancel request cancels before they start: pending, or waiting to retry
    (running ones are stopped, and their attempts decide their state)."""
    return [t for t, s in states.items() if s in _WAITING]


_WAITING: Collection[TaskState] = frozenset({TaskState.PENDING, TaskState.RETRY})
