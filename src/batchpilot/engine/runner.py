"""Runs one pipeline run: the scheduling loop, and the store writes it makes.

The engine thread alone writes task transitions. Steps run on a thread pool
(those that never block, like ``empty``, on the engine thread itself, after the
scheduling step that started them committed) and hand back an
:class:`AttemptOutcome`; each scheduling step (outcomes
recorded, skips decided, callbacks queued, attempts started) is committed in
one transaction *before* any newly started attempt is submitted, so a
process killed at any moment leaves a state that ``resume`` can continue.
What each transition is comes from :mod:`batchpilot.engine.transitions`;
this module carries it out.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from batchpilot.engine.board import TaskBoard
from batchpilot.engine.callbacks import fire_pending_callbacks, task_callbacks
from batchpilot.engine.context import RunContext
from batchpilot.engine.dispatch import TaskDispatch, never_blocking_tasks
from batchpilot.engine.early_start import EarlyStarts
from batchpilot.engine.handles import (
    AttemptHandle,
    AttemptOutcome,
    StopReason,
    stop_attempts,
    wait_for_attempts,
)
from batchpilot.engine.heartbeat import watch_run
from batchpilot.engine.listener import RunListener
from batchpilot.engine.log_shipping import flush_shipped_logs
from batchpilot.engine.outputs import TaskOutput
from batchpilot.engine.retry import retry_delay
from batchpilot.engine.run_end import finish_run, record_crash, record_interruption
from batchpilot.engine.transactions import OpenTransactions, TransactionGroup, run_groups
from batchpilot.engine.transitions import (
    CANCELLED_BEFORE_START,
    AttemptEnd,
    GroupView,
    Transition,
    after_attempt,
    cancel_waiting,
    group_commits_now,
)
from batchpilot.engine.workers import DaemonThreadPool
from batchpilot.errors import PermanentStepError, RunInterrupted, RunTakenOver, StepError
from batchpilot.spec.model import RetryPolicy
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import CallbackRecord

#: how long a stopped attempt gets to wind down before the engine gives up on it
STOP_GRACE_S = 5.0
#: how often the engine looks for a cancel request
CANCEL_POLL_S = 0.5
#: at most this many attempts of steps that never block start in one scheduling step
#: (they take no worker; the cap bounds how long other outcomes and a cancel wait)
INLINE_PER_STEP = 100

_Event = tuple[str, TaskState, int, str | None]


@dataclass
class _Tick:
    """What one scheduling step decided, to take effect once its transaction committed."""

    cancel_now: bool = False
    events: list[_Event] = field(default_factory=list)
    callbacks: list[CallbackRecord] = field(default_factory=list)
    started: list[AttemptHandle] = field(default_factory=list)
    #: started attempts of steps that never block, run on the engine's thread
    inline: list[AttemptHandle] = field(default_factory=list)
    began: list[tuple[Future[AttemptOutcome], AttemptHandle]] = field(default_factory=list)


class RunExecutor:
    """Drives the tasks of one run to a terminal state."""

    def __init__(
        self, run: RunContext, *, listener: RunListener | None = None, workers: int | None = None
    ) -> None:
        self.run = run
        self.store = run.state_store
        self.listener = listener or RunListener()
        self.workers = max(1, workers or run.spec.max_workers or run.settings.workers)
        spec = run.spec
        self._has_callbacks = any(n.on_success or n.on_failure or n.on_retry for n in spec.nodes)
        self._rng = random.Random()
        self.transactions = OpenTransactions(
            pipeline=spec.name,
            run_id=run.run_id,
            groups=run_groups(spec, run.params, run.ds, run.run_id, run.registry),
            connections=run.connections,
            registry=run.registry,
        )
        self._inline = never_blocking_tasks(spec, run.registry, grouped=self.transactions.member_of)
        self._cancel_requested = threading.Event()
        self._cancelling = False
        self._running: dict[Future[AttemptOutcome], AttemptHandle] = {}
        self.early = EarlyStarts(
            spec,
            run.registry,
            grouped=self.transactions.member_of,
            log_dir=run.log_dir,
            grace_s=STOP_GRACE_S,
        )

    # -- public -----------------------------------------------------------------------------

    def execute(
        self,
        states: Mapping[str, TaskState],
        attempts: Mapping[str, int],
        outputs: Mapping[str, TaskOutput],
    ) -> RunStatus:
        """Run every non-terminal task; returns the run's final status.

        ``states``/``attempts``/``outputs`` are the tasks' stored state (all
        pending for a new run; what succeeded before, for a resumed one).
        Raises :class:`RunInterrupted` on Ctrl-C/SIGTERM, leaving the run resumable.
        """
        run = self.run
        self.board = TaskBoard(run.spec, states, attempts, outputs)
        self.dispatch = TaskDispatch(
            run,
            outputs=self.board.outputs,
            attempts=self.board.attempts,
            transactions=self.transactions,
            listener=self.listener,
        )
        run.log_dir.mkdir(parents=True, exist_ok=True)
        self.store.set_run_status(run.run_id, RunStatus.RUNNING)
        self.listener.run_started(run.run_id, run.spec, dict(self.board.states))
        fire_pending_callbacks(run)  # left by a process that died
        stop_watch = threading.Event()
        watch_run(
            self.store,
            run.run_id,
            run.owner,
            heartbeat_s=run.settings.heartbeat_s,
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
            self._stop_running()
            record_interruption(run, self._running.values(), self.listener)
            raise RunInterrupted(run.run_id) from None
        except RunTakenOver:
            self._stop_running()  # the new owner records their fate and runs them again
            raise
        finally:
            stop_watch.set()
            self.early.abort_all()
            pool.shutdown()
            self.transactions.rollback_all()  # a group still open did not finish: undo it
        return finish_run(
            run,
            states=self.board.states,
            cancelled=self._cancel_requested.is_set(),
            listener=self.listener,
        )

    # -- the scheduling loop ----------------------------------------------------------------

    def _loop(self, pool: DaemonThreadPool) -> None:
        finished: list[tuple[AttemptHandle, AttemptOutcome]] = []
        while True:
            tick = self._schedule(finished)
            self._take_effect(tick, pool)
            if not self._running and not self.board.has_waiting():
                return
            wake_at = [time.monotonic() + CANCEL_POLL_S, *self.board.retry_at.values()]
            finished = wait_for_attempts(
                self._running, wake_at=wake_at, grace_s=STOP_GRACE_S, pool=pool
            )

    def _schedule(self, finished: list[tuple[AttemptHandle, AttemptOutcome]]) -> _Tick:
        """One scheduling step, in one store transaction: record the ended attempts, the
        cancel request, the skips, and the attempts that start now."""
        run, board = self.run, self.board
        tick = _Tick(cancel_now=self._cancel_requested.is_set() and not self._cancelling)
        with self.store.write() as tx:
            tx.hold_run(run.run_id, run.owner)
            for handle, outcome in finished:
                self._record_outcome(tx, handle, outcome, tick)
            if tick.cancel_now:
                self._cancelling = True
                self._cancel_waiting(tx, tick)
            if not self._cancelling:
                for task_id, reason in board.decide():
                    tx.set_task_states(run.run_id, [task_id], TaskState.SKIPPED, error=reason)
                    self._on_left_running(task_id, TaskState.SKIPPED)
                    tick.events.append(
                        (task_id, TaskState.SKIPPED, board.attempts.get(task_id, 0), reason)
                    )
                board.release_due_retries(time.monotonic())
                tick.began = self._begin_early(tx)
                self._start_ready(tx, tick)
            if tick.callbacks:
                tx.add_callbacks(run.run_id, tick.callbacks)
        return tick

    def _take_effect(self, tick: _Tick, pool: DaemonThreadPool) -> None:
        """Committed: now the transitions may take effect."""
        if tick.cancel_now:
            for handle in self._running.values():
                handle.stop(StopReason.CANCEL, grace_s=STOP_GRACE_S)
        for task_id, state, attempt, error in tick.events:
            self.listener.task_state_changed(task_id, state, attempt=attempt, error=error)
        if tick.callbacks:
            fire_pending_callbacks(self.run)
        for future, handle in tick.began:
            handle.begin(self.run.log_path(handle.task_id, handle.attempt))
            self._running[future] = handle
            self.listener.task_state_changed(
                handle.task_id, TaskState.RUNNING, attempt=handle.attempt
            )
        room = self.workers - len(self._running) - len(tick.started) - len(self.early)
        starting = [h.task_id for h in tick.started]
        early = self.early.plan(starting, self.board.states, room) if room > 0 else []
        for handle in tick.started:
            handle.started = time.monotonic()
            live_output = self.early.followed_output(handle.task_id) if early else None
            run_attempt = self.dispatch.run_task_attempt
            if live_output is not None:
                run_attempt = functools.partial(run_attempt, live_output=live_output)
            future = pool.submit(run_attempt, handle)
            self._running[future] = handle
            self.listener.task_state_changed(
                handle.task_id, TaskState.RUNNING, attempt=handle.attempt
            )
        for child, live in early:
            follow = functools.partial(self.dispatch.run_task_attempt, live_input=live)
            self.early.start(pool, child, self.board.attempts.get(child, 0) + 1, follow)
        if tick.inline:  # once the others are on their workers
            self._run_inline(tick.inline)

    def _run_inline(self, handles: list[AttemptHandle]) -> None:
        """Run the attempts of steps that never block here, on the engine thread (no
        hand-off to a worker and back), one after the other. Their outcomes are collected
        with the others', as Futures; each is in ``_running`` before the first one runs,
        so an interruption closes them all (those it kept from running are cancelled)."""
        futures: list[Future[AttemptOutcome]] = [Future() for _ in handles]
        for future, handle in zip(futures, handles, strict=True):
            self._running[future] = handle
        try:
            for future, handle in zip(futures, handles, strict=True):
                future.set_running_or_notify_cancel()
                self.listener.task_state_changed(
                    handle.task_id, TaskState.RUNNING, attempt=handle.attempt
                )
                handle.started = time.monotonic()
                outcome = self.dispatch.run_task_attempt(handle)
                future.set_result(outcome)
                if isinstance(outcome.error, KeyboardInterrupt):
                    raise KeyboardInterrupt  # Ctrl-C while the step ran: the run stops
        except BaseException as exc:  # Ctrl-C: no Future is left for the stop to wait on
            for future in futures:
                if future.running():
                    future.set_exception(exc)
                future.cancel()
            raise

    def _start_ready(self, tx: Any, tick: _Tick) -> None:
        """Record as started the ready tasks there are free workers for, in pipeline order;
        those whose step never blocks take no worker (up to ``INLINE_PER_STEP`` of them)."""
        board, busy = self.board, len(self._running)
        while board.ready:
            task_id = board.ready[0][1]
            if task_id in self._inline:
                if len(tick.inline) >= INLINE_PER_STEP:
                    return
                started = tick.inline
            elif busy + len(tick.started) < self.workers:
                started = tick.started
            else:
                return
            board.pop_ready()
            attempt = board.next_attempt(task_id)
            # an attempt run here returns at once: its log goes with its record, no file
            log_path = None if started is tick.inline else self.run.log_path(task_id, attempt)
            handle = AttemptHandle(
                task_id=task_id,
                attempt=attempt,
                log_path=log_path,
                timeout_s=board.nodes[task_id].timeout_s,
            )
            tx.start_attempt(self.run.run_id, task_id, attempt, log_path=log_path and str(log_path))
            board.set_state(task_id, TaskState.RUNNING)
            started.append(handle)

    def _begin_early(self, tx: Any) -> list[tuple[Future[AttemptOutcome], AttemptHandle]]:
        """Ready tasks with an early attempt: record it as started (it has its worker)."""
        began = self.early.take_ready(self.board.ready)
        for _, handle in began:
            task_id, attempt = handle.task_id, handle.attempt
            self.board.queued.discard(task_id)
            self.board.attempts[task_id] = attempt
            log_path = str(self.run.log_path(task_id, attempt))
            tx.start_attempt(self.run.run_id, task_id, attempt, log_path=log_path)
            self.board.set_state(task_id, TaskState.RUNNING)
        return began

    def _cancel_waiting(self, tx: Any, tick: _Tick) -> None:
        waiting = cancel_waiting(self.board.states)
        tx.set_task_states(
            self.run.run_id, waiting, TaskState.CANCELLED, error=CANCELLED_BEFORE_START
        )
        for task_id in waiting:
            self._set_state(task_id, TaskState.CANCELLED)
            tick.events.append(
                (task_id, TaskState.CANCELLED, self.board.attempts.get(task_id, 0), None)
            )
        self.board.clear_waiting()

    def _set_state(self, task_id: str, state: TaskState) -> None:
        self._on_left_running(task_id, state)
        self.board.set_state(task_id, state)

    def _on_left_running(self, task_id: str, state: TaskState) -> None:
        """Early attempts that follow a task that will not succeed (now) stop."""
        if len(self.early) and state is not TaskState.RUNNING:
            self.early.abort(task_id)
            if state is not TaskState.SUCCESS:
                self.early.abort_children(task_id)

    # -- recording an ended attempt ---------------------------------------------------------

    def _record_outcome(
        self, tx: Any, handle: AttemptHandle, outcome: AttemptOutcome, tick: _Tick
    ) -> None:
        """Decide the task's transition (committing its group first if it is due), then
        write it and its effects."""
        task_id = handle.task_id
        node = self.board.nodes[task_id]
        group = self.transactions.member_of.get(task_id)
        view = self._group_view(group) if group is not None else None
        end = AttemptEnd(task_id, handle.attempt, outcome.error, handle.stop_reason)
        if group is not None and group_commits_now(end, view):
            try:
                self.transactions.commit(group)  # before the store records the success
            except StepError as exc:
                end = replace(end, error=PermanentStepError(str(exc)))
        transition = after_attempt(
            end,
            retry=node.retry,
            timeout_s=node.timeout_s,
            group=view,
            children=self.board.children,
            retry_delay=self._retry_delay,
            redact=self.run.redact,
        )
        self._write_transition(tx, transition, outcome, tick)

    def _write_transition(
        self, tx: Any, transition: Transition, outcome: AttemptOutcome, tick: _Tick
    ) -> None:
        run_id, task_id, board = self.run.run_id, transition.task_id, self.board
        live = self.early.take_followed_output(task_id)
        if transition.succeeded:
            output = outcome.output or TaskOutput()
            tx.finish_attempt(
                run_id,
                task_id,
                transition.attempt,
                state=TaskState.SUCCESS,
                rows_in=output.rows_in,
                rows_out=output.rows_out,
                rows_rejected=output.rows_rejected,
                duration_s=outcome.duration_s,
                output=output.to_json(),
                log_text=outcome.log_text,
            )
            board.outputs[task_id] = output
            if live is not None:
                live.finish(output.artifact)
        else:
            tx.finish_attempt(
                run_id,
                task_id,
                transition.attempt,
                state=transition.state,
                attempt_state=transition.attempt_state,
                error=transition.error,
                duration_s=outcome.duration_s,
                log_text=outcome.log_text,
            )
            if live is not None:
                live.abandon()
        if transition.retry_in_s is not None:
            board.retry_at[task_id] = time.monotonic() + transition.retry_in_s
        self._set_state(task_id, transition.state)
        tick.events.append((task_id, transition.state, transition.attempt, transition.error))
        if transition.rolled_back_group is not None:
            self._roll_back_group(tx, transition, tick)
        if self._has_callbacks:
            for due in transition.callbacks:
                tick.callbacks += task_callbacks(
                    self.run.spec,
                    event=due.event,
                    task_id=due.task_id,
                    attempt=due.attempt,
                    error=due.error,
                    log_path=self._log_path_of(due.task_id, due.attempt),
                    state=due.state.value,
                )
        board.mark_dirty(transition.dirty)

    def _roll_back_group(self, tx: Any, transition: Transition, tick: _Tick) -> None:
        """A member failed for good: nothing of the group remains, so its members that
        had succeeded fail too."""
        assert transition.rolled_back_group is not None
        self.transactions.rollback(transition.rolled_back_group)
        undone, error = list(transition.undone_members), transition.undone_error
        if undone:
            tx.set_task_states(self.run.run_id, undone, TaskState.FAILED, error=error)
        for member in undone:
            self._set_state(member, TaskState.FAILED)
            tick.events.append(
                (member, TaskState.FAILED, self.board.attempts.get(member, 0), error)
            )

    def _log_path_of(self, task_id: str, attempt: int) -> str | None:
        """Where an attempt's log file is; None for a task run on the engine's thread,
        whose log is kept with its attempt's record (see :meth:`_start_ready`)."""
        return None if task_id in self._inline else str(self.run.log_path(task_id, attempt))

    def _group_view(self, group: TransactionGroup) -> GroupView:
        states, attempts = self.board.states, self.board.attempts
        return GroupView(
            name=group.name,
            members=group.members,
            succeeded=frozenset(m for m in group.members if states[m] is TaskState.SUCCESS),
            attempts={m: attempts.get(m, 0) for m in group.members},
        )

    def _retry_delay(self, policy: RetryPolicy, attempt: int) -> float:
        return retry_delay(policy, attempt, self._rng)

    # -- interruption and liveness ----------------------------------------------------------

    def _stop_running(self) -> None:
        self.early.abort_all()
        stop_attempts(self._running, reason=StopReason.INTERRUPT, grace_s=STOP_GRACE_S)


def execute_run(
    run: RunContext,
    states: Mapping[str, TaskState],
    attempts: Mapping[str, int],
    outputs: Mapping[str, TaskOutput],
    *,
    listener: RunListener | None = None,
    workers: int | None = None,
) -> None:
    """Drive an existing run to its end. Whatever stops the engine other than an
    interruption or a takeover ends the run ``failed`` with its one-line reason (see
    :func:`record_crash`): a run is never left ``running`` by an error.

    Raises :class:`RunInterrupted` on Ctrl-C/SIGTERM, also one that lands before the
    engine's loop began or while it stopped its tasks (a second Ctrl-C): the run is
    left resumable either way."""
    listener = listener or RunListener()
    try:
        RunExecutor(run, listener=listener, workers=workers).execute(states, attempts, outputs)
    except (RunInterrupted, RunTakenOver):
        raise
    except KeyboardInterrupt:  # outside the loop the executor stops on Ctrl-C
        if run.state_store.get_run(run.run_id).status.is_terminal():
            raise  # the run had ended: Ctrl-C came while its callbacks or compensations ran
        record_interruption(run, (), listener)
        raise RunInterrupted(run.run_id) from None
    except Exception as exc:
        record_crash(run, exc, listener)
    finally:
        flush_shipped_logs(run.settings)  # the run's last log lines are in the bucket
