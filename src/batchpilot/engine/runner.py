"""Runs one pipeline run: a state machine over task instances, persisted at every step.

The engine thread alone writes to the store. Steps run on a thread pool and
hand back an :class:`AttemptOutcome`; each scheduling step (outcomes recorded,
skips decided, attempts started) is committed in one transaction *before*
any newly started attempt is submitted, so a process killed at any moment
leaves a state that ``resume`` can continue from.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpilot.artifacts import ArtifactRef, ArtifactStore
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import build_step, template_context
from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.engine.task_logs import AttemptLog
from batchpilot.engine.trigger_rules import Readiness, decide
from batchpilot.errors import BatchpilotError, SpecError, StepError
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import to_jsonable
from batchpilot.states import RunStatus, TaskState
from batchpilot.steps.base import StepContext, StepResult
from batchpilot.steps.registry import StepRegistry
from batchpilot.store import RunStore

MAX_ERROR_CHARS = 500


class RunInterrupted(BatchpilotError):
    """The run was stopped by a signal; it can be resumed."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} was interrupted; continue it with: batchpilot resume {run_id}"
        )


@dataclass
class AttemptOutcome:
    """What one attempt of a step returned or raised."""

    task_id: str
    attempt: int
    result: StepResult | None = None
    error: BaseException | None = None
    duration_s: float = 0.0


@dataclass
class _Running:
    task_id: str
    attempt: int
    started: float
    deadline: float | None
    cancel: threading.Event = field(default_factory=threading.Event)


def one_line_error(exc: BaseException) -> str:
    """A single line naming what went wrong, for ``runs show`` (the log has the traceback)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not isinstance(exc, BatchpilotError):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first[:MAX_ERROR_CHARS]


class RunExecutor:
    """Drives the tasks of one run to a terminal state."""

    def __init__(
        self,
        *,
        spec: PipelineSpec,
        run_id: str,
        params: Mapping[str, Any],
        ds: str,
        store: RunStore,
        settings: Settings,
        registry: StepRegistry,
        owner: str,
        listener: RunListener | None = None,
        workers: int | None = None,
    ) -> None:
        self.spec = spec
        self.run_id = run_id
        self.params = dict(params)
        self.ds = ds
        self.store = store
        self.settings = settings
        self.registry = registry
        self.owner = owner
        self.listener = listener or RunListener()
        self.workers = max(1, workers or spec.max_workers or settings.workers)
        self.run_dir = settings.runs_dir / run_id
        self.artifacts = ArtifactStore(self.run_dir / "artifacts")
        self._nodes = {n.id: n for n in spec.nodes}
        self._position = {n.id: i for i, n in enumerate(spec.nodes)}
        self._children = spec.downstream()
        self._rng = random.Random()

    # -- public -----------------------------------------------------------------------------

    def execute(
        self,
        states: dict[str, TaskState],
        attempts: dict[str, int],
        outputs: dict[str, dict[str, Any]],
    ) -> RunStatus:
        """Run every non-terminal task; returns the run's final status.

        ``states``/``attempts``/``outputs`` are the tasks' stored state (all
        pending for a new run; what succeeded before, for a resumed one).
        Raises :class:`RunInterrupted` on Ctrl-C/SIGTERM, leaving the run resumable.
        """
        self.states = dict(states)
        self.attempts = dict(attempts)
        self.outputs = dict(outputs)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.store.set_run_status(self.run_id, RunStatus.RUNNING)
        self.listener.run_started(self.run_id, self.spec, dict(self.states))
        stop_heartbeat = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(stop_heartbeat,), name="bp-heartbeat", daemon=True
        )
        beat.start()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bp-task")
        self._running: dict[Future[AttemptOutcome], _Running] = {}
        try:
            self._loop(pool)
        except KeyboardInterrupt:
            self._interrupt()
            raise RunInterrupted(self.run_id) from None
        finally:
            stop_heartbeat.set()
            pool.shutdown(wait=False, cancel_futures=True)
        failed = any(s in (TaskState.FAILED, TaskState.CANCELLED) for s in self.states.values())
        status = RunStatus.FAILED if failed else RunStatus.SUCCESS
        error = self._run_error() if failed else None
        self.store.set_run_status(self.run_id, status, error=error, release=True)
        self.listener.run_finished(self.run_id, status)
        return status

    # -- the scheduling loop ----------------------------------------------------------------

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        retry_at: dict[str, float] = {}
        ready: list[tuple[int, str]] = []
        queued: set[str] = set()
        dirty = [(self._position[t], t) for t, s in self.states.items() if s is TaskState.PENDING]
        heapq.heapify(dirty)
        for task_id, state in self.states.items():
            if state is TaskState.RETRY:
                retry_at[task_id] = time.monotonic()
        finished: list[AttemptOutcome] = []
        timed_out: list[_Running] = []

        while True:
            started: list[tuple[str, int]] = []
            skipped: list[str] = []
            events: list[tuple[str, TaskState, int, str | None]] = []
            with self.store.write() as tx:
                for outcome in finished:
                    self._record_outcome(tx, outcome, retry_at, dirty, events)
                for run in timed_out:
                    outcome = AttemptOutcome(
                        run.task_id,
                        run.attempt,
                        error=StepError(f"timed out after {self._nodes[run.task_id].timeout_s:g}s"),
                        duration_s=time.monotonic() - run.started,
                    )
                    self._record_outcome(tx, outcome, retry_at, dirty, events)
                self._decide(dirty, ready, queued, skipped)
                for task_id in skipped:
                    reason = self._skip_reason(task_id)
                    tx.set_task_states(self.run_id, [task_id], TaskState.SKIPPED, error=reason)
                    events.append(
                        (task_id, TaskState.SKIPPED, self.attempts.get(task_id, 0), reason)
                    )
                now = time.monotonic()
                for task_id in [t for t, due in retry_at.items() if due <= now]:
                    del retry_at[task_id]
                    heapq.heappush(ready, (self._position[task_id], task_id))
                while ready and len(self._running) + len(started) < self.workers:
                    _, task_id = heapq.heappop(ready)
                    queued.discard(task_id)
                    attempt = self.attempts.get(task_id, 0) + 1
                    self.attempts[task_id] = attempt
                    tx.start_attempt(
                        self.run_id,
                        task_id,
                        attempt,
                        log_path=str(self._log_path(task_id, attempt)),
                    )
                    self.states[task_id] = TaskState.RUNNING
                    started.append((task_id, attempt))
            # Committed: now the transitions may take effect.
            for task_id, state, attempt, error in events:
                self.listener.task_state_changed(task_id, state, attempt=attempt, error=error)
            for task_id, attempt in started:
                self._submit(pool, task_id, attempt)
                self.listener.task_state_changed(task_id, TaskState.RUNNING, attempt=attempt)

            if not self._running and not ready and not retry_at:
                return
            finished, timed_out = self._wait(retry_at)

    def _decide(
        self,
        dirty: list[tuple[int, str]],
        ready: list[tuple[int, str]],
        queued: set[str],
        skipped: list[str],
    ) -> None:
        """Evaluate trigger rules of tasks whose upstream changed, in topological order."""
        seen: set[str] = set()
        while dirty:
            _, task_id = heapq.heappop(dirty)
            if task_id in seen or task_id in queued:
                continue
            seen.add(task_id)
            if self.states[task_id] is not TaskState.PENDING:
                continue
            node = self._nodes[task_id]
            verdict = decide(node.trigger_rule, (self.states[p] for p in node.upstream))
            if verdict is Readiness.RUN:
                heapq.heappush(ready, (self._position[task_id], task_id))
                queued.add(task_id)
            elif verdict is Readiness.SKIP:
                self.states[task_id] = TaskState.SKIPPED
                skipped.append(task_id)
                for child in self._children[task_id]:
                    heapq.heappush(dirty, (self._position[child], child))

    def _skip_reason(self, task_id: str) -> str:
        node = self._nodes[task_id]
        upstream = ", ".join(f"{p} {self.states[p].value}" for p in node.upstream)
        return f"skipped: trigger rule {node.trigger_rule.value} cannot be met ({upstream})"

    def _record_outcome(
        self,
        tx: Any,
        outcome: AttemptOutcome,
        retry_at: dict[str, float],
        dirty: list[tuple[int, str]],
        events: list[tuple[str, TaskState, int, str | None]],
    ) -> None:
        task_id, attempt = outcome.task_id, outcome.attempt
        node = self._nodes[task_id]
        if outcome.error is None:
            result = outcome.result or StepResult()
            output = {
                "artifact": result.output.to_json() if result.output else None,
                "side_outputs": {k: v.to_json() for k, v in result.side_outputs.items()},
                "metadata": to_jsonable(result.metadata),
            }
            tx.finish_attempt(
                self.run_id,
                task_id,
                attempt,
                state=TaskState.SUCCESS,
                rows_in=result.rows_in,
                rows_out=result.rows_out,
                rows_rejected=result.rows_rejected,
                duration_s=outcome.duration_s,
                output=output,
            )
            self.outputs[task_id] = output
            state, error = TaskState.SUCCESS, None
        else:
            error = self.settings.connections.redact(one_line_error(outcome.error))
            if should_retry(node.retry, attempt, outcome.error):
                state = TaskState.RETRY
                retry_at[task_id] = time.monotonic() + retry_delay(node.retry, attempt, self._rng)
            else:
                state = TaskState.FAILED
            tx.finish_attempt(
                self.run_id,
                task_id,
                attempt,
                state=state,
                attempt_state=TaskState.FAILED,
                error=error,
                duration_s=outcome.duration_s,
            )
        self.states[task_id] = state
        events.append((task_id, state, attempt, error))
        if state.is_terminal():
            for child in self._children[task_id]:
                heapq.heappush(dirty, (self._position[child], child))

    def _wait(self, retry_at: dict[str, float]) -> tuple[list[AttemptOutcome], list[_Running]]:
        now = time.monotonic()
        wake = [due for due in retry_at.values()]
        wake += [r.deadline for r in self._running.values() if r.deadline is not None]
        timeout = max(0.0, min(wake) - now) if wake else None
        if self._running:
            done, _ = wait(list(self._running), timeout=timeout, return_when=FIRST_COMPLETED)
        else:
            time.sleep(timeout or 0)
            done = set()
        finished = []
        for future in done:
            self._running.pop(future)
            finished.append(future.result())
        now = time.monotonic()
        timed_out = []
        for future, run in list(self._running.items()):
            if run.deadline is not None and run.deadline <= now:
                run.cancel.set()  # the step stops at its next check; its result is ignored
                del self._running[future]
                timed_out.append(run)
        return finished, timed_out

    # -- attempts ---------------------------------------------------------------------------

    def _submit(self, pool: ThreadPoolExecutor, task_id: str, attempt: int) -> None:
        node = self._nodes[task_id]
        now = time.monotonic()
        run = _Running(
            task_id=task_id,
            attempt=attempt,
            started=now,
            deadline=now + node.timeout_s if node.timeout_s else None,
        )
        future = pool.submit(self._run_attempt, task_id, attempt, run.cancel)
        self._running[future] = run

    def _run_attempt(self, task_id: str, attempt: int, cancel: threading.Event) -> AttemptOutcome:
        """Run one attempt on a worker thread; never raises."""
        started = time.perf_counter()
        node = self._nodes[task_id]
        outcome = AttemptOutcome(task_id, attempt)
        log = AttemptLog(self._log_path(task_id, attempt), name=f"batchpilot.task.{task_id}")
        with log:
            log.logger.info(
                "run %s, task %s (%s), attempt %d", self.run_id, task_id, node.type, attempt
            )
            try:
                context = template_context(
                    self.spec,
                    params=self.params,
                    run_id=self.run_id,
                    ds=self.ds,
                    task_id=task_id,
                )
                step = build_step(node, self.registry, context, path=self.spec.source_path)
                ctx = StepContext(
                    pipeline=self.spec.name,
                    run_id=self.run_id,
                    task_id=task_id,
                    attempt=attempt,
                    params=self.params,
                    inputs=self._inputs(task_id),
                    extra_inputs=self._side_inputs(task_id),
                    artifacts=self.artifacts,
                    connections=self.settings.connections,
                    log=log.logger,
                    cancel_event=cancel,
                    progress=self.listener.task_rows_reported,
                )
                outcome.result = step.run(ctx)
                log.logger.info("succeeded: %s", _describe(outcome.result))
            except SpecError as exc:
                # A config that only fails once rendered is bad input: no retry can fix it.
                from batchpilot.errors import PermanentStepError

                outcome.error = PermanentStepError(str(exc))
                log.logger.error("invalid configuration: %s", exc)
            except BaseException as exc:
                outcome.error = exc
                text = "".join(traceback.format_exception(exc))
                log.logger.error(
                    "failed: %s\n%s",
                    one_line_error(exc),
                    self.settings.connections.redact(text),
                )
        outcome.duration_s = time.perf_counter() - started
        return outcome

    def _inputs(self, task_id: str) -> dict[str, ArtifactRef]:
        inputs = {}
        for parent in self._nodes[task_id].upstream:
            artifact = (self.outputs.get(parent) or {}).get("artifact")
            if artifact:
                inputs[parent] = ArtifactRef.from_json(artifact)
        return inputs

    def _side_inputs(self, task_id: str) -> dict[str, dict[str, ArtifactRef]]:
        side: dict[str, dict[str, ArtifactRef]] = {}
        for parent in self._nodes[task_id].upstream:
            outputs = (self.outputs.get(parent) or {}).get("side_outputs") or {}
            if outputs:
                side[parent] = {k: ArtifactRef.from_json(v) for k, v in outputs.items()}
        return side

    def _log_path(self, task_id: str, attempt: int) -> Path:
        return self.run_dir / "logs" / f"{task_id}.attempt-{attempt}.log"

    # -- interruption and liveness ----------------------------------------------------------

    def _interrupt(self) -> None:
        for run in self._running.values():
            run.cancel.set()
        wait(list(self._running), timeout=5)
        with self.store.write() as tx:
            for future, run in self._running.items():
                tx.finish_attempt(
                    self.run_id,
                    run.task_id,
                    run.attempt,
                    state=TaskState.PENDING,
                    attempt_state=TaskState.FAILED,
                    error="interrupted",
                    duration_s=time.monotonic() - run.started,
                )
                del future
        self.store.set_run_status(
            self.run_id,
            RunStatus.FAILED,
            error=f"interrupted; resume with: batchpilot resume {self.run_id}",
            release=True,
        )
        self.listener.run_finished(self.run_id, RunStatus.FAILED)

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_s):
            try:
                self.store.heartbeat(self.run_id, self.owner)
            except BatchpilotError:
                continue  # a busy store must not kill the run; the next beat retries

    def _run_error(self) -> str:
        failed = [t for t, s in self.states.items() if s is TaskState.FAILED]
        return f"failed tasks: {', '.join(failed)}" if failed else "tasks were cancelled"


def _describe(result: StepResult) -> str:
    parts = []
    for name in ("rows_in", "rows_out", "rows_rejected"):
        value = getattr(result, name)
        if value is not None:
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "done"
