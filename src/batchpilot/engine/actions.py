"""Running an action (a compensation or a callback): a step outside the graph,
synchronously, with its own retries and one log file per attempt."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.engine.attempts import (
    AttemptHandle,
    AttemptOutcome,
    StopReason,
    one_line_error,
)
from batchpilot.engine.preflight import action_node, prepare_attempt
from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.errors import StepError
from batchpilot.settings import Settings
from batchpilot.spec.model import ActionSpec, NodeSpec, PipelineSpec
from batchpilot.steps.base import Step, StepContext
from batchpilot.steps.registry import StepRegistry


@dataclass(frozen=True)
class ActionOutcome:
    """How an action ended after its retries."""

    succeeded: bool
    attempts: int
    error: str | None = None


@dataclass
class ActionRunner:
    """Runs actions of one run; knows its spec, params, store folders and connections."""

    spec: PipelineSpec
    run_id: str
    params: Mapping[str, Any]
    ds: str
    settings: Settings
    registry: StepRegistry
    run_dir: Path

    def run(
        self,
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
    ) -> ActionOutcome:
        """Run ``action`` until it succeeds or its retries are spent; never raises.

        ``on_attempt(attempt, log_path)`` runs before each attempt and
        ``on_attempt_end(attempt, error_or_None)`` after it, for bookkeeping.
        """
        node = action_node(action, node_id=task_id)
        rng = random.Random()
        attempt = first_attempt
        tries = 0
        while True:
            tries += 1
            log_path = self.run_dir / "logs" / f"{log_name}-{attempt}.log"
            if on_attempt is not None:
                on_attempt(attempt, str(log_path))
            handle = AttemptHandle(
                task_id=task_id, attempt=attempt, log_path=log_path, timeout_s=action.timeout_s
            )
            outcome = self._run_once(handle, node, event, original, inputs)
            error = None
            if outcome.error is not None:
                error = self.settings.connections.redact(one_line_error(outcome.error))
            if on_attempt_end is not None:
                on_attempt_end(attempt, error)
            if outcome.error is None:
                return ActionOutcome(True, tries)
            if not should_retry(action.retry, tries, outcome.error):
                return ActionOutcome(False, tries, error)
            time.sleep(retry_delay(action.retry, tries, rng))
            attempt += 1

    def _run_once(
        self,
        handle: AttemptHandle,
        node: NodeSpec,
        event: Mapping[str, Any] | None,
        original: Mapping[str, Any] | None,
        inputs: Mapping[str, ArtifactRef] | None,
    ) -> Any:
        def build() -> tuple[Step, StepContext]:
            extra: dict[str, Any] = {}
            if event is not None:
                extra["event"] = dict(event)
            if original is not None:
                extra["task"] = dict(original)
            step, ctx = prepare_attempt(
                self.spec,
                node,
                self.registry,
                run_id=self.run_id,
                params=self.params,
                ds=self.ds,
                attempt=handle.attempt,
                artifacts=ArtifactStore(self.run_dir / "artifacts" / "actions"),
                connections=self.settings.connections,
                cancel_event=handle.cancel,
                template_extra=extra,
                output_roots=self.settings.output_roots,
            )
            ctx.inputs = dict(inputs or {})
            ctx.event = event
            ctx.original = original
            return step, ctx

        header = (
            f"run {self.run_id}, {node.type} action for {handle.task_id}, attempt {handle.attempt}"
        )
        if handle.timeout_s is None:
            return handle.run(build, header=header, redact=self.settings.connections.redact)
        # Enforce the timeout from this thread while the action runs on another.
        result: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: result.setdefault(
                "outcome", handle.run(build, header=header, redact=self.settings.connections.redact)
            ),
            daemon=True,
        )
        worker.start()
        worker.join(handle.timeout_s)
        if worker.is_alive():
            handle.stop(StopReason.TIMEOUT, grace_s=5)
            worker.join(5)
        outcome = result.get("outcome")
        if outcome is None or handle.stop_reason is not None:
            return AttemptOutcome(
                handle.task_id,
                handle.attempt,
                error=StepError(f"timed out after {handle.timeout_s:g}s"),
            )
        return outcome
