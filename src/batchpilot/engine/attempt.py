"""The one path that runs one attempt of a step.

Locally (a task, a compensation, a callback) and inside an Airflow worker
alike: render the node's config, build its step and a complete, frozen
:class:`StepContext`, run the step under the attempt's handle (which stops it
on cancel or timeout), log it, and hand back an :class:`AttemptOutcome` whose
success is a typed :class:`TaskOutput`. It never raises. The engine's loop
stops its tasks' attempts on cancel and timeout itself; a caller that runs an
attempt on its own thread (a compensation, a callback) uses
:func:`run_with_timeout`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.artifacts.live import LiveOutput
from batchpilot.engine.building import build_step
from batchpilot.engine.context import RunContext
from batchpilot.engine.handles import AttemptHandle, AttemptOutcome, AttemptStopped, StopReason
from batchpilot.engine.log_shipping import shipped_log
from batchpilot.engine.outputs import TaskOutput
from batchpilot.engine.task_logs import AttemptLog, ExternalLog
from batchpilot.errors import PermanentStepError, SpecError, StepError, first_line
from batchpilot.spec.model import NodeSpec
from batchpilot.steps.base import DeferredInputs, Step, StepContext, StepResult

#: how long an attempt run by :func:`run_with_timeout` gets to wind down once stopped
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class EarlyInputs:
    """How an attempt that starts early (before its upstream ended) gets its inputs: it
    follows ``live`` as it is written, and reads the upstream outputs ``resolve`` gives
    once ``started`` is set (the task really started)."""

    live: LiveOutput | None
    started: threading.Event
    resolve: Callable[[], tuple[Mapping[str, ArtifactRef], Mapping[str, Mapping[str, ArtifactRef]]]]


@dataclass(frozen=True)
class AttemptPlan:
    """What one attempt sees besides its run: its node, number, inputs and role."""

    node: NodeSpec
    number: int
    artifacts: ArtifactStore
    inputs: Mapping[str, ArtifactRef] = field(default_factory=dict)
    side_inputs: Mapping[str, Mapping[str, ArtifactRef]] = field(default_factory=dict)
    #: set instead of ``inputs`` for an attempt that starts early
    early: EarlyInputs | None = None
    #: the output consumers that start early follow while this attempt writes it
    live_output: LiveOutput | None = None
    #: a callback's event, a compensation's original task (also template variables)
    event: Mapping[str, Any] | None = None
    original: Mapping[str, Any] | None = None
    #: opens (or returns) the atomic group's connection, on the attempt's thread
    open_transaction: Callable[[], Any] | None = None
    reruns: int = 0
    progress: Callable[[str, int], None] | None = None
    #: the first line of the attempt's log
    header: str = ""


def run_attempt(
    run: RunContext,
    plan: AttemptPlan,
    handle: AttemptHandle,
    *,
    log: logging.Logger | None = None,
) -> AttemptOutcome:
    """Run one attempt, logging to its own file (or to ``log``); never raises.

    A config that is invalid only once rendered fails as a
    :class:`PermanentStepError` (no retry can fix it).
    """
    outcome = AttemptOutcome(handle.task_id, handle.attempt)
    started = time.perf_counter()
    try:
        _run_logged(run, plan, handle, outcome, log)
    except AttemptStopped as exc:  # landed outside the step, while wrapping up
        if outcome.error is None and outcome.output is None:
            outcome.error = exc
    # an attempt that started early counts from when it really started
    outcome.duration_s = time.perf_counter() - (handle.began_at or started)
    outcome.stop_reason = handle.stop_reason
    return outcome


def _run_logged(
    run: RunContext,
    plan: AttemptPlan,
    handle: AttemptHandle,
    outcome: AttemptOutcome,
    log: logging.Logger | None,
) -> None:
    own_file = log is None and handle.log_path is not None
    attempt_log = handle.open_log(log)
    try:
        # the log closes first, then its last lines are shipped
        with shipped_log(run, handle, own_file=own_file), attempt_log:
            _run_step(run, plan, handle, outcome, attempt_log)
    finally:
        outcome.log_text = attempt_log.text


def _run_step(
    run: RunContext,
    plan: AttemptPlan,
    handle: AttemptHandle,
    outcome: AttemptOutcome,
    attempt_log: AttemptLog | ExternalLog,
) -> None:
    """Run the step, recording its result or error in ``outcome`` and its log."""
    logger = attempt_log.logger
    attempt_log.write(logging.INFO, plan.header or _header(run, plan))
    try:
        handle.attach()
        step, context = build_attempt(run, plan, handle, logger)
        handle.attach(context)
        if handle.cancel.is_set():
            raise AttemptStopped
        result = step.run(context)
        context.wait_for_start()  # no outcome before the task really started
        handle.finished()
        outcome.output = TaskOutput.from_result(result)
        attempt_log.write(logging.INFO, f"succeeded: {describe(result)}")
    except SpecError as exc:
        handle.finished()
        outcome.error = PermanentStepError(str(exc))
        logger.error("invalid configuration: %s", exc)
    except BaseException as exc:
        handle.finished()
        outcome.error = exc
        if handle.stop_reason is not None:
            logger.error("stopped (%s): %s", handle.stop_reason.value, first_line(exc))
        else:
            text = "".join(traceback.format_exception(exc))
            logger.error("failed: %s\n%s", run.redact(first_line(exc)), run.redact(text))


def run_with_timeout(
    run: RunContext, plan: AttemptPlan, handle: AttemptHandle, *, log: logging.Logger | None = None
) -> AttemptOutcome:
    """Run the attempt on this thread, or, with a timeout, on another one while this
    thread enforces it (stopping the attempt the way the engine stops a task)."""
    if handle.timeout_s is None:
        return run_attempt(run, plan, handle, log=log)
    result: dict[str, AttemptOutcome] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("outcome", run_attempt(run, plan, handle, log=log)),
        daemon=True,
    )
    worker.start()
    worker.join(handle.timeout_s)
    if worker.is_alive():
        handle.stop(StopReason.TIMEOUT, grace_s=STOP_GRACE_S)
        worker.join(STOP_GRACE_S)
    outcome = result.get("outcome")
    if outcome is None or handle.stop_reason is not None:
        return AttemptOutcome(
            handle.task_id,
            handle.attempt,
            error=StepError(f"timed out after {handle.timeout_s:g}s"),
        )
    return outcome


def build_attempt(
    run: RunContext, plan: AttemptPlan, handle: AttemptHandle, log: logging.Logger
) -> tuple[Step[Any], StepContext]:
    """The attempt's step, with its config rendered, and its complete context.

    Raises :class:`SpecError` for a config that is invalid once rendered, and
    whatever opening the atomic group's connection raises.
    """
    node = plan.node
    variables = run.template_variables(node.id)
    if plan.event is not None:
        variables["event"] = dict(plan.event)
    if plan.original is not None:
        variables["task"] = dict(plan.original)
    step = build_step(
        node,
        run.registry,
        variables,
        path=run.spec.source_path,
        output_roots=run.settings.output_roots,
    )
    inputs: Mapping[str, ArtifactRef] = plan.inputs
    side_inputs: Mapping[str, Mapping[str, ArtifactRef]] = plan.side_inputs
    early = plan.early
    if early is not None:
        inputs = DeferredInputs(lambda: early.resolve()[0], early.started)
        side_inputs = DeferredInputs(lambda: early.resolve()[1], early.started)
    context = StepContext(
        pipeline=run.spec.name,
        run_id=run.run_id,
        task_id=node.id,
        attempt=plan.number,
        params=run.params,
        inputs=inputs,
        extra_inputs=side_inputs,
        artifacts=plan.artifacts,
        connections=run.connections,
        log=log,
        cancel_event=handle.cancel,
        progress=plan.progress,
        event=plan.event,
        original=plan.original,
        transaction=plan.open_transaction() if plan.open_transaction else None,
        reruns=plan.reruns,
        live_inputs={early.live.task_id: early.live} if early and early.live else {},
        start_signal=early.started if early else None,
        live_output=plan.live_output,
        server_session_recorder=_server_session_recorder(run, node.id, plan.number),
    )
    return step, context


def _server_session_recorder(
    run: RunContext, task_id: str, attempt: int
) -> Callable[[str, int, str], None] | None:
    """Where a step's database sessions are recorded (none on an Airflow worker, whose
    process Airflow supervises)."""
    store = run.store
    if store is None:
        return None

    def record(connection: str, backend_pid: int, backend_start: str) -> None:
        store.record_server_session(
            run.run_id,
            task_id,
            attempt,
            connection=connection,
            backend_pid=backend_pid,
            backend_start=backend_start,
        )

    return record


def _header(run: RunContext, plan: AttemptPlan) -> str:
    return f"run {run.run_id}, task {plan.node.id} ({plan.node.type}), attempt {plan.number}"


def describe(result: StepResult) -> str:
    """``rows_in=…, rows_out=…`` for the log."""
    parts = []
    for name in ("rows_in", "rows_out", "rows_rejected"):
        value = getattr(result, name)
        if value is not None:
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "done"
