"""Running an action (a compensation or a callback): a step outside the graph,
synchronously, with its own retries and one log file per attempt."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.engine.attempt import AttemptPlan, run_with_timeout
from batchpilot.engine.building import action_node
from batchpilot.engine.context import RunContext
from batchpilot.engine.handles import AttemptHandle
from batchpilot.engine.outputs import TaskOutput
from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.errors import first_line
from batchpilot.spec.model import ActionSpec


@dataclass(frozen=True)
class ActionOutcome:
    """How an action ended after its retries."""

    succeeded: bool
    attempts: int
    #: the last attempt's one-line error, and what it raised
    error: str | None = None
    failure: BaseException | None = None
    #: what the succeeding attempt produced
    output: TaskOutput | None = None


def run_action(
    run: RunContext,
    action: ActionSpec,
    *,
    task_id: str,
    log_name: str,
    first_attempt: int = 1,
    event: Mapping[str, Any] | None = None,
    original: Mapping[str, Any] | None = None,
    inputs: Mapping[str, ArtifactRef] | None = None,
    on_attempt: Callable[[int, str], None] | None = None,
    on_attempt_end: Callable[[int, str | None], None] | None = None,
    retries: bool = True,
    log: logging.Logger | None = None,
) -> ActionOutcome:
    """Run ``action`` of ``run`` until it succeeds or its retries are spent; never raises.

    ``on_attempt(attempt, log_path)`` runs before each attempt and
    ``on_attempt_end(attempt, error_or_None)`` after it, for bookkeeping.
    ``retries=False`` runs one attempt (Airflow retries a compensation task
    itself); ``log`` replaces the attempt's own log file (an Airflow task's log).
    """
    node = action_node(action, node_id=task_id)
    artifacts = ArtifactStore(run.artifacts_dir / "actions")
    rng = random.Random()
    attempt = first_attempt
    tries = 0
    while True:
        tries += 1
        log_path = run.log_dir / f"{log_name}-{attempt}.log"
        if on_attempt is not None:
            on_attempt(attempt, str(log_path))
        handle = AttemptHandle(
            task_id=task_id, attempt=attempt, log_path=log_path, timeout_s=action.timeout_s
        )
        plan = AttemptPlan(
            node=node,
            number=attempt,
            artifacts=artifacts,
            inputs=dict(inputs or {}),
            event=event,
            original=original,
            header=f"run {run.run_id}, {node.type} action for {task_id}, attempt {attempt}",
        )
        outcome = run_with_timeout(run, plan, handle, log=log)
        error = None
        if outcome.error is not None:
            error = run.redact(first_line(outcome.error))
        if on_attempt_end is not None:
            on_attempt_end(attempt, error)
        if outcome.error is None:
            return ActionOutcome(True, tries, output=outcome.output)
        if not retries or not should_retry(action.retry, tries, outcome.error):
            return ActionOutcome(False, tries, error, failure=outcome.error)
        time.sleep(retry_delay(action.retry, tries, rng))
        attempt += 1
