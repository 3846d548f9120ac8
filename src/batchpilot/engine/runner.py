"""Runs one pipeline run: a state machine over task instances, persisted at every step.

The engine thread alone writes task transitions. Steps run on a thread pool
and hand back an :class:`AttemptOutcome`; each scheduling step (outcomes
recorded, skips decided, callbacks queued, attempts started) is committed in
one transaction *before* any newly started attempt is submitted, so a
process killed at any moment leaves a state that ``resume`` can continue.
"""

from __future__ import annotations

import functools
import heapq
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, wait
from typing import Any

from batchpilot.artifacts import ArtifactStore, upstream_outputs, upstream_side_outputs
from batchpilot.artifacts.live import LiveOutput
from batchpilot.engine.actions import ActionRunner
from batchpilot.engine.attempts import (
    AttemptHandle,
    AttemptOutcome,
    StopReason,
    one_line_error,
    wait_for_attempts,
)
from batchpilot.engine.callbacks import fire_pending_callbacks, group_callbacks, task_callbacks
from batchpilot.engine.early_start import EarlyStarts
from batchpilot.engine.heartbeat import watch_run
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import prepare_attempt
from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.engine.run_end import finish_run
from batchpilot.engine.transactions import (
    OpenTransactions,
    TransactionGroup,
    group_token,
    run_groups,
)
from batchpilot.engine.trigger_rules import (
    Readiness,
    decide_counts,
    outcome_bucket,
    skip_reason,
)
from batchpilot.engine.workers import DaemonThreadPool
from batchpilot.errors import (
    PermanentStepError,
    RunInterrupted,
    RunTakenOver,
    StepError,
)
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
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
        self.early = EarlyStarts(
            spec,
            registry,
            grouped=self.transactions.member_of,
            log_dir=self.run_dir / "logs",
            grace_s=STOP_GRACE_S,
        )

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
        watch_run(
            self.store,
            self.run_id,
            self.owner,
            heartbeat_s=self.settings.heartbeat_s,
            poll_s=CANCEL_POLL_S,
            cancel_requested=self._cancel_requested,
            stop=stop_watch,
        )
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
            self.early.abort_all()
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
            began: list[tuple[Future[AttemptOutcome], AttemptHandle]] = []
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
                        node = self._nodes[task_id]
                        reason = skip_reason(node.trigger_rule, node.upstream, self.states)
                        tx.set_task_states(self.run_id, [task_id], TaskState.SKIPPED, error=reason)
                        events.append(
                            (task_id, TaskState.SKIPPED, self.attempts.get(task_id, 0), reason)
                        )
                    now = time.monotonic()
                    for task_id in [t for t, due in retry_at.items() if due <= now]:
                        del retry_at[task_id]
                        heapq.heappush(ready, (self._position[task_id], task_id))
                    began = self._begin_early(tx, ready, queued)
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
            for future, handle in began:
                handle.begin(self._log_path(handle.task_id, handle.attempt))
                self._running[future] = handle
                self.listener.task_state_changed(
                    handle.task_id, TaskState.RUNNING, attempt=handle.attempt
                )
            room = self.workers - len(self._running) - len(started) - len(self.early)
            early = self.early.plan([h.task_id for h in started], self.states, room, self.artifacts)
            for handle in started:
                handle.started = time.monotonic()
                future = pool.submit(self._run_attempt, handle)
                self._running[future] = handle
                self.listener.task_state_changed(
                    handle.task_id, TaskState.RUNNING, attempt=handle.attempt
                )
            for child, live in early:
                run_attempt = functools.partial(self._run_attempt, live=live)
                self.early.start(pool, child, self.attempts.get(child, 0) + 1, run_attempt)

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

    def _begin_early(
        self, tx: Any, ready: list[tuple[int, str]], queued: set[str]
    ) -> list[tuple[Future[AttemptOutcome], AttemptHandle]]:
        """Ready tasks with an early attempt: record it as started (it has its worker)."""
        began = self.early.take_ready(ready)
        for _, handle in began:
            task_id, attempt = handle.task_id, handle.attempt
            queued.discard(task_id)
            self.attempts[task_id] = attempt
            tx.start_attempt(
                self.run_id, task_id, attempt, log_path=str(self._log_path(task_id, attempt))
            )
            self._set_state(task_id, TaskState.RUNNING)
        return began

    def _set_state(self, task_id: str, state: TaskState) -> None:
        """Change a task's state, keeping its children's upstream counts current."""
        if len(self.early) and state is not TaskState.RUNNING:
            self.early.abort(task_id)
            if state is not TaskState.SUCCESS:
                self.early.abort_children(task_id)
        before = outcome_bucket(self.states[task_id])
        after = outcome_bucket(state)
        self.states[task_id] = state
        if before != after:
            for child in self._children[task_id]:
                if before is not None:
                    self._counts[child][before] -= 1
                if after is not None:
                    self._counts[child][after] += 1

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
        live = self.artifacts.live.pop(task_id, None)
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
            if live is not None:
                live.finish(result.output)
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
        if live is not None and state is not TaskState.SUCCESS:
            live.abandon()
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
                    callbacks.extend(
                        group_callbacks(
                            self.spec,
                            group.members,
                            event="on_success",
                            attempts=self.attempts,
                            log_path=self._log_path,
                        )
                    )
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

    def _run_attempt(self, handle: AttemptHandle, live: LiveOutput | None = None) -> AttemptOutcome:
        """Run one attempt on a worker; ``live``: the upstream output an early attempt follows."""
        node = self._nodes[handle.task_id]
        go = handle.go

        def upstream() -> tuple[Any, Any]:
            return (
                upstream_outputs(node.upstream, self.outputs),
                upstream_side_outputs(node.upstream, self.outputs),
            )

        def progress(task_id: str, rows: int) -> None:
            if go is None or go.is_set():  # an early attempt's task is still pending
                self.listener.task_rows_reported(task_id, rows)

        def build() -> tuple[Step, StepContext]:
            step, ctx = prepare_attempt(
                self.spec,
                node,
                self.registry,
                run_id=self.run_id,
                params=self.params,
                ds=self.ds,
                attempt=handle.attempt,
                artifacts=self.artifacts,
                connections=self.settings.connections,
                cancel_event=handle.cancel,
                output_roots=self.settings.output_roots,
            )
            ctx.progress = progress
            ctx.reruns = self.reruns.get(handle.task_id, 0)
            if go is None:
                ctx.inputs, ctx.extra_inputs = upstream()
            else:
                ctx.live_inputs = {live.task_id: live} if live is not None else {}
                ctx.start_signal = go
                ctx.resolve_inputs = upstream
            group = self.transactions.member_of.get(handle.task_id)
            if group is not None:
                token = group_token(group, self.attempts.get(group.first, 1))
                ctx.transaction = self.transactions.connection_for(group, token)
            return step, ctx

        header = f"run {self.run_id}, task {handle.task_id} ({node.type}), attempt {handle.attempt}"
        if live is not None:
            header += (
                f"; started early, while '{live.task_id}' runs: it reads that output as it is "
                f"written and commits nothing until '{live.task_id}' succeeded"
            )
        return handle.run(build, header=header, redact=self.settings.connections.redact)

    def _log_path(self, task_id: str, attempt: int) -> Any:
        return self.run_dir / "logs" / f"{task_id}.attempt-{attempt}.log"

    # -- the end of a run -------------------------------------------------------------------

    def _finish(self) -> RunStatus:
        return finish_run(
            spec=self.spec,
            run_id=self.run_id,
            owner=self.owner,
            generation=self.generation,
            states=self.states,
            cancelled=self._cancel_requested.is_set(),
            store=self.store,
            actions=self.actions,
            listener=self.listener,
        )

    # -- interruption and liveness ----------------------------------------------------------

    def _stop_running(self) -> None:
        self.early.abort_all()
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
