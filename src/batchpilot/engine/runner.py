"""Runs one pipeline run: a state machine over task instances, persisted at every step.

The engine thread alone writes task transitions. Steps run on a thread pool
and hand back an :class:`AttemptOutcome`; each scheduling step (outcomes
recorded, skips decided, callbacks queued, attempts started) is committed in
one transaction *before* any newly started attempt is submitted, so a
process killed at any moment leaves a state that ``resume`` can continue.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, wait
from typing import Any

from batchpilot.artifacts import ArtifactStore, upstream_outputs, upstream_side_outputs
from batchpilot.engine.actions import ActionRunner
from batchpilot.engine.attempts import (
    AttemptHandle,
    AttemptOutcome,
    StopReason,
    one_line_error,
    wait_for_attempts,
)
from batchpilot.engine.callbacks import fire_pending_callbacks, run_callbacks, task_callbacks
from batchpilot.engine.compensation import compensate
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import build_step, template_context
from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.engine.transactions import (
    OpenTransactions,
    TransactionGroup,
    group_token,
    run_groups,
)
from batchpilot.engine.trigger_rules import Readiness, decide_counts, outcome_bucket
from batchpilot.engine.workers import DaemonThreadPool
from batchpilot.errors import (
    BatchpilotError,
    PermanentStepError,
    RunInterrupted,
    RunTakenOver,
    StepError,
)
from batchpilot.settings import Settings
from batchpilot.spec.model import CompensationMode, PipelineSpec
from batchpilot.spec.serialize import to_jsonable
from batchpilot.states import RunStatus, TaskState
from batchpilot.steps.base import Step, StepContext, StepResult
from batchpilot.steps.registry import StepRegistry
from batchpilot.store import CallbackRecord, RunStore

#: how long a stopped attempt gets to wind down before the engine gives up on it
STOP_GRACE_S = 5.0
#: how often the engine looks for a cancel request
CANCEL_POLL_S = 0.5


_Event = tuple[str, TaskState, int, str | None]


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
        generation: int = 1,
        reruns: Mapping[str, int] | None = None,
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
        self.generation = generation
        #: per task, how many times it succeeded before in this run (see StepContext.load_key)
        self.reruns = dict(reruns or {})
        self.run_dir = settings.runs_dir / run_id
        self.artifacts = ArtifactStore(self.run_dir / "artifacts")
        self.actions = ActionRunner(
            spec=spec,
            run_id=run_id,
            params=self.params,
            ds=ds,
            settings=settings,
            registry=registry,
            run_dir=self.run_dir,
        )
        self._nodes = {n.id: n for n in spec.nodes}
        self._position = {n.id: i for i, n in enumerate(spec.nodes)}
        self._children = spec.downstream()
        self._has_callbacks = any(n.on_success or n.on_failure or n.on_retry for n in spec.nodes)
        self._rng = random.Random()
        self.transactions = OpenTransactions(
            pipeline=spec.name,
            run_id=run_id,
            groups=run_groups(spec, self.params, ds, run_id),
            connections=settings.connections,
        )
        self._cancel_requested = threading.Event()
        self._running: dict[Future[AttemptOutcome], AttemptHandle] = {}

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
        # per task: how many upstream tasks succeeded, failed, were skipped
        self._counts = {n.id: [0, 0, 0] for n in self.spec.nodes}
        for node in self.spec.nodes:
            for parent in node.upstream:
                bucket = outcome_bucket(self.states[parent])
                if bucket is not None:
                    self._counts[node.id][bucket] += 1
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.store.set_run_status(self.run_id, RunStatus.RUNNING)
        self.listener.run_started(self.run_id, self.spec, dict(self.states))
        fire_pending_callbacks(self.store, self.actions)  # left by a process that died
        stop_watch = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(stop_watch,), name="bp-heartbeat", daemon=True
        )
        watcher.start()
        # Room for attempts that ignored a stop and were abandoned, still holding a thread.
        pool = DaemonThreadPool(self.workers * 2 + 2)
        try:
            with self.store.session():
                self._loop(pool)
        except KeyboardInterrupt:
            self._interrupt()
            raise RunInterrupted(self.run_id) from None
        except RunTakenOver:
            self._stop_running()  # the new owner records their fate and runs them again
            raise
        finally:
            stop_watch.set()
            pool.shutdown()
            self.transactions.rollback_all()  # a group still open did not finish: undo it
        return self._finish()

    # -- the scheduling loop ----------------------------------------------------------------

    def _loop(self, pool: DaemonThreadPool) -> None:
        retry_at: dict[str, float] = {}
        ready: list[tuple[int, str]] = []
        queued: set[str] = set()
        dirty = [(self._position[t], t) for t, s in self.states.items() if s is TaskState.PENDING]
        heapq.heapify(dirty)
        finished: list[tuple[AttemptHandle, AttemptOutcome]] = []
        cancelling = False

        while True:
            started: list[AttemptHandle] = []
            events: list[_Event] = []
            callbacks: list[CallbackRecord] = []
            cancel_now = self._cancel_requested.is_set() and not cancelling
            with self.store.write() as tx:
                tx.hold_run(self.run_id, self.owner)
                for handle, outcome in finished:
                    self._record_outcome(tx, handle, outcome, retry_at, dirty, events, callbacks)
                if cancel_now:
                    cancelling = True
                    waiting = [
                        t
                        for t, s in self.states.items()
                        if s in (TaskState.PENDING, TaskState.RETRY)
                    ]
                    tx.set_task_states(
                        self.run_id,
                        waiting,
                        TaskState.CANCELLED,
                        error="cancelled before it started",
                    )
                    for task_id in waiting:
                        self._set_state(task_id, TaskState.CANCELLED)
                        events.append(
                            (task_id, TaskState.CANCELLED, self.attempts.get(task_id, 0), None)
                        )
                    retry_at.clear()
                    ready.clear()
                    queued.clear()
                    dirty.clear()
                if not cancelling:
                    skipped: list[str] = []
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
                        handle = AttemptHandle(
                            task_id=task_id,
                            attempt=attempt,
                            log_path=self._log_path(task_id, attempt),
                            timeout_s=self._nodes[task_id].timeout_s,
                        )
                        tx.start_attempt(
                            self.run_id, task_id, attempt, log_path=str(handle.log_path)
                        )
                        self._set_state(task_id, TaskState.RUNNING)
                        started.append(handle)
                if callbacks:
                    tx.add_callbacks(self.run_id, callbacks)
            # Committed: now the transitions may take effect.
            if cancel_now:
                for handle in self._running.values():
                    handle.stop(StopReason.CANCEL, grace_s=STOP_GRACE_S)
            for task_id, state, attempt, error in events:
                self.listener.task_state_changed(task_id, state, attempt=attempt, error=error)
            if callbacks:
                fire_pending_callbacks(self.store, self.actions)
            for handle in started:
                handle.started = time.monotonic()
                future = pool.submit(self._run_attempt, handle)
                self._running[future] = handle
                self.listener.task_state_changed(
                    handle.task_id, TaskState.RUNNING, attempt=handle.attempt
                )

            if not self._running and not ready and not retry_at:
                return
            finished = self._wait(retry_at)

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
            verdict = decide_counts(node.trigger_rule, len(node.upstream), *self._counts[task_id])
            if verdict is Readiness.RUN:
                heapq.heappush(ready, (self._position[task_id], task_id))
                queued.add(task_id)
            elif verdict is Readiness.SKIP:
                self._set_state(task_id, TaskState.SKIPPED)
                skipped.append(task_id)
                for child in self._children[task_id]:
                    heapq.heappush(dirty, (self._position[child], child))

    def _set_state(self, task_id: str, state: TaskState) -> None:
        """Change a task's state, keeping its children's upstream counts current."""
        before = outcome_bucket(self.states[task_id])
        after = outcome_bucket(state)
        self.states[task_id] = state
        if before != after:
            for child in self._children[task_id]:
                if before is not None:
                    self._counts[child][before] -= 1
                if after is not None:
                    self._counts[child][after] += 1

    def _skip_reason(self, task_id: str) -> str:
        node = self._nodes[task_id]
        upstream = ", ".join(f"{p} {self.states[p].value}" for p in node.upstream)
        return f"skipped: trigger rule {node.trigger_rule.value} cannot be met ({upstream})"

    def _record_outcome(
        self,
        tx: Any,
        handle: AttemptHandle,
        outcome: AttemptOutcome,
        retry_at: dict[str, float],
        dirty: list[tuple[int, str]],
        events: list[_Event],
        callbacks: list[CallbackRecord],
    ) -> None:
        task_id, attempt = handle.task_id, handle.attempt
        node = self._nodes[task_id]
        error: str | None = None
        reason = handle.stop_reason
        group = self.transactions.member_of.get(task_id)
        if (
            group is not None
            and task_id == group.last
            and outcome.error is None
            and reason in (None, StopReason.TIMEOUT)
        ):
            try:
                self.transactions.commit(group)  # before the store records the success
            except StepError as exc:
                outcome.error = PermanentStepError(str(exc))
        if outcome.error is None and reason in (None, StopReason.TIMEOUT):
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
            state = TaskState.SUCCESS
        elif reason is StopReason.CANCEL:
            state, error = TaskState.CANCELLED, "cancelled while running"
            tx.finish_attempt(
                self.run_id,
                task_id,
                attempt,
                state=state,
                error=error,
                duration_s=outcome.duration_s,
            )
        else:
            failure = outcome.error or StepError("stopped")
            if reason is StopReason.TIMEOUT:
                failure = StepError(f"timed out after {node.timeout_s:g}s")
            error = self.settings.connections.redact(one_line_error(failure))
            if should_retry(node.retry, attempt, failure):
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
        self._set_state(task_id, state)
        events.append((task_id, state, attempt, error))
        if group is not None and state in (TaskState.FAILED, TaskState.CANCELLED):
            self._roll_back_group(tx, group, task_id, events, dirty)
        if self._has_callbacks:
            event = {
                TaskState.SUCCESS: "on_success",
                TaskState.FAILED: "on_failure",
                TaskState.RETRY: "on_retry",
            }.get(state)
            if group is not None and state is TaskState.SUCCESS:
                # A member's success is real only once its group commits: then every
                # member's on_success is queued, once.
                if task_id == group.last:
                    callbacks.extend(self._group_callbacks(group, "on_success"))
            elif event:
                callbacks.extend(
                    task_callbacks(
                        self.spec,
                        event=event,
                        task_id=task_id,
                        attempt=attempt,
                        error=error,
                        log_path=str(handle.log_path),
                        state=state.value,
                    )
                )
        if state.is_terminal():
            for child in self._children[task_id]:
                heapq.heappush(dirty, (self._position[child], child))

    def _group_callbacks(self, group: TransactionGroup, event: str) -> list[CallbackRecord]:
        found = []
        for member in group.members:
            attempt = self.attempts.get(member, 0)
            log_path = str(self._log_path(member, attempt))
            found += task_callbacks(
                self.spec,
                event=event,
                task_id=member,
                attempt=attempt,
                error=None,
                log_path=log_path,
                state=event.removeprefix("on_"),
            )
        return found

    def _roll_back_group(
        self,
        tx: Any,
        group: TransactionGroup,
        failed_member: str,
        events: list[_Event],
        dirty: list[tuple[int, str]],
    ) -> None:
        """A member failed for good: nothing of the group remains, so its members that
        had succeeded fail too."""
        self.transactions.rollback(group.name)
        undone = [m for m in group.members if self.states[m] is TaskState.SUCCESS]
        error = f"rolled back: transaction group '{group.name}' failed at '{failed_member}'"
        if undone:
            tx.set_task_states(self.run_id, undone, TaskState.FAILED, error=error)
        for member in undone:
            self._set_state(member, TaskState.FAILED)
            events.append((member, TaskState.FAILED, self.attempts.get(member, 0), error))
            for child in self._children[member]:
                heapq.heappush(dirty, (self._position[child], child))

    def _wait(self, retry_at: dict[str, float]) -> list[tuple[AttemptHandle, AttemptOutcome]]:
        wake_at = [time.monotonic() + CANCEL_POLL_S, *retry_at.values()]
        return wait_for_attempts(self._running, wake_at=wake_at, grace_s=STOP_GRACE_S)

    # -- attempts ---------------------------------------------------------------------------

    def _run_attempt(self, handle: AttemptHandle) -> AttemptOutcome:
        node = self._nodes[handle.task_id]

        def build() -> tuple[Step, StepContext]:
            context = template_context(
                self.spec,
                params=self.params,
                run_id=self.run_id,
                ds=self.ds,
                task_id=handle.task_id,
            )
            step = build_step(node, self.registry, context, path=self.spec.source_path)
            ctx = StepContext(
                pipeline=self.spec.name,
                run_id=self.run_id,
                task_id=handle.task_id,
                attempt=handle.attempt,
                params=self.params,
                inputs=upstream_outputs(node.upstream, self.outputs),
                extra_inputs=upstream_side_outputs(node.upstream, self.outputs),
                artifacts=self.artifacts,
                connections=self.settings.connections,
                log=None,  # type: ignore[arg-type] - set by the handle to the attempt's log
                cancel_event=handle.cancel,
                progress=self.listener.task_rows_reported,
                reruns=self.reruns.get(handle.task_id, 0),
            )
            group = self.transactions.member_of.get(handle.task_id)
            if group is not None:
                token = group_token(group, self.attempts.get(group.first, 1))
                ctx.transaction = self.transactions.connection_for(group, token)
            return step, ctx

        header = f"run {self.run_id}, task {handle.task_id} ({node.type}), attempt {handle.attempt}"
        return handle.run(build, header=header, redact=self.settings.connections.redact)

    def _log_path(self, task_id: str, attempt: int) -> Any:
        return self.run_dir / "logs" / f"{task_id}.attempt-{attempt}.log"

    # -- the end of a run -------------------------------------------------------------------

    def _finish(self) -> RunStatus:
        states = self.states.values()
        if self._cancel_requested.is_set():
            status, error = RunStatus.CANCELLED, "cancelled"
        elif any(s in (TaskState.FAILED, TaskState.CANCELLED) for s in states):
            failed = [t for t, s in self.states.items() if s is TaskState.FAILED]
            status = RunStatus.FAILED
            error = f"failed tasks: {', '.join(failed)}" if failed else "tasks were cancelled"
        else:
            status, error = RunStatus.SUCCESS, None
        event = {RunStatus.SUCCESS: "on_run_success", RunStatus.FAILED: "on_run_failure"}.get(
            status
        )
        needs_compensation = (
            status is RunStatus.FAILED
            and self.spec.compensation is CompensationMode.AUTO
            and any(
                self.states[n.id] is TaskState.SUCCESS and n.compensate for n in self.spec.nodes
            )
        )
        with self.store.write() as tx:
            tx.hold_run(self.run_id, self.owner)
            if event:
                tx.add_callbacks(
                    self.run_id,
                    run_callbacks(
                        self.spec,
                        event=event,
                        status=status.value,
                        error=error,
                        generation=self.generation,
                    ),
                )
            tx.set_run_status(self.run_id, status, error=error, release=not needs_compensation)
        if needs_compensation:
            try:
                compensate(self.store, self.actions, self.listener)
            finally:
                self.store.release_run(self.run_id, self.owner)
        fire_pending_callbacks(self.store, self.actions)
        self.listener.run_finished(self.run_id, status)
        return status

    # -- interruption and liveness ----------------------------------------------------------

    def _stop_running(self) -> None:
        for handle in self._running.values():
            handle.stop(StopReason.INTERRUPT, grace_s=STOP_GRACE_S)
        wait(list(self._running), timeout=STOP_GRACE_S)

    def _interrupt(self) -> None:
        self._stop_running()
        with self.store.write() as tx:
            tx.hold_run(self.run_id, self.owner)
            for handle in self._running.values():
                tx.finish_attempt(
                    self.run_id,
                    handle.task_id,
                    handle.attempt,
                    state=TaskState.PENDING,
                    attempt_state=TaskState.FAILED,
                    error="interrupted",
                    duration_s=time.monotonic() - handle.started,
                )
            tx.set_run_status(
                self.run_id,
                RunStatus.FAILED,
                error=f"interrupted; resume with: batchpilot resume {self.run_id}",
                release=True,
            )
        self.listener.run_finished(self.run_id, RunStatus.FAILED)

    def _watch(self, stop: threading.Event) -> None:
        """Heartbeat, and look for a cancel request from another process."""
        last_beat = time.monotonic()
        while not stop.wait(CANCEL_POLL_S):
            try:
                if self.store.get_run(self.run_id).cancel_requested:
                    self._cancel_requested.set()
                if time.monotonic() - last_beat >= self.settings.heartbeat_s:
                    self.store.heartbeat(self.run_id, self.owner)
                    last_beat = time.monotonic()
            except BatchpilotError:
                continue  # a busy store must not kill the run; the next beat retries
