"""The engine's services: what the CLI, the scheduler and the REST API call to act on runs.

One :class:`RunService` per state store. Each method is one thing a user
asks for, whichever executor the run lives on: the service finds the
executor (``local`` or ``airflow``) by name for a new run, and by the run
record for an existing one. The edges translate arguments and errors; the
rules live here and below.

Errors are :class:`BatchpilotError` subclasses only: :class:`SpecError`
(invalid input, nothing recorded), :class:`RunNotFound`,
:class:`RunStateError` (the run's state does not allow the action),
:class:`UnknownExecutor`, :class:`AirflowError`, :class:`RunInterrupted`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from batchpilot.engine.control import (
    ReapedRun,
    check_compensable,
    compensate_run,
    dead_runs,
    is_dead,
    reap_runs,
    remote_runs_in_flight,
    stored_spec,
)
from batchpilot.engine.executors import (
    FOLLOW_POLL_S,
    LOCAL,
    Executors,
    LocalExecutor,
    Sleep,
    UnknownExecutor,
    Warn,
)
from batchpilot.engine.listener import RunListener
from batchpilot.engine.logs import AttemptLog, Offsets
from batchpilot.engine.queued import queue_checked_run
from batchpilot.engine.requeue import requeue_for_resume, requeue_for_retry
from batchpilot.engine.results import RunResult
from batchpilot.engine.runs import resume_run, retry_run
from batchpilot.errors import RunStateError
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunRecord, RunStore, RunSummaryRecord
from batchpilot.store.schedule_records import RunClaim


def _ignore(message: str) -> None:
    """The default ``warn``: say nothing."""


class RunService:
    """Start, follow, resume, retry, cancel, compensate, reap, list and show runs, read
    and follow logs."""

    def __init__(
        self, *, settings: Settings, store: RunStore, executors: Executors | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.executors = executors or Executors([LocalExecutor()])

    def start(
        self,
        spec: PipelineSpec,
        *,
        on: str = LOCAL,
        params: Mapping[str, Any] | None = None,
        ds: str | None = None,
        workers: int | None = None,
        listener: RunListener | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Start a run of ``spec`` on executor ``on`` and return when it has ended.

        ``run_id`` names the new run (a caller that must know the id before the run
        exists, e.g. for an idempotency key); by default a new sortable id.

        Raises :class:`SpecError` (nothing recorded) for invalid input,
        :class:`UnknownExecutor` for an unknown ``on``, :class:`RunInterrupted`
        when a local run is stopped by Ctrl-C/SIGTERM.
        """
        return self.executors.get(on).start(
            spec,
            settings=self.settings,
            store=self.store,
            params=dict(params or {}),
            ds=ds,
            workers=workers,
            listener=listener or RunListener(),
            run_id=run_id,
        )

    def queue(
        self,
        spec: PipelineSpec,
        *,
        run_id: str,
        ds: str,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        on: str = LOCAL,
    ) -> RunClaim:
        """Check, then queue a run of ``spec`` for ``serve`` (``batchpilot trigger``) to
        execute on executor ``on``; the same ``idempotency_key`` returns the same run.

        Raises :class:`SpecError` with nothing recorded for invalid params or date,
        :class:`UnknownExecutor` for an unknown ``on``, and the executor's own error
        when it cannot start runs (``airflow`` not configured: :class:`AirflowConfigError`
        naming the setting).
        """
        self.executors.get(on).check_available()
        return queue_checked_run(
            spec,
            settings=self.settings,
            store=self.store,
            run_id=run_id,
            ds=ds,
            params=params,
            idempotency_key=idempotency_key,
            executor=on,
        )

    def execute(
        self, run_id: str, *, workers: int | None = None, listener: RunListener | None = None
    ) -> RunResult:
        """Drive a run created queued (a schedule's slot, a ``trigger``), or one whose
        process died, to its end with the pipeline stored with it (``serve``'s workers).

        The run's executor drives it (``local``: here; ``airflow``: triggered there,
        mirrored here until it ends).

        Raises :class:`RunStateError` when it ended well, was cancelled or a live
        process drives it; :class:`RunInterrupted` on Ctrl-C/SIGTERM;
        :class:`UnknownExecutor` for an executor this installation lacks.
        """
        run = self.store.get_run(run_id)
        return self.executors.for_run(run).execute_queued(
            run,
            settings=self.settings,
            store=self.store,
            listener=listener or RunListener(),
            workers=workers,
        )

    def follow(self, run_id: str, *, listener: RunListener | None = None) -> RunResult:
        """Wait until a run started elsewhere ends, telling ``listener`` what changes."""
        run = self.store.get_run(run_id)
        executor = self.executors.for_run(run)
        return executor.follow(run, store=self.store, listener=listener or RunListener())

    def resume(
        self,
        run_id: str,
        *,
        spec: PipelineSpec | None = None,
        workers: int | None = None,
        listener: RunListener | None = None,
    ) -> RunResult:
        """Continue an interrupted or failed run; only what did not succeed runs again.

        The pipeline is ``spec`` when given, else its file re-read when it still
        exists (so a fixed bug takes effect), else the copy stored with the run.
        """
        return resume_run(
            run_id,
            settings=self.settings,
            store=self.store,
            spec=spec,
            workers=workers,
            load_file=load_pipeline,
            listener=listener,
        )

    def retry(
        self,
        run_id: str,
        *,
        task: str | None = None,
        downstream: bool = False,
        spec: PipelineSpec | None = None,
        workers: int | None = None,
        listener: RunListener | None = None,
    ) -> RunResult:
        """Run a finished run's failed tasks again (or ``task``, and with ``downstream``
        everything after it) in the same run; ``spec`` as for :meth:`resume`."""
        return retry_run(
            run_id,
            settings=self.settings,
            store=self.store,
            spec=spec,
            task_id=task,
            downstream=downstream,
            workers=workers,
            load_file=load_pipeline,
            listener=listener,
        )

    def queue_retry(
        self, run_id: str, *, task: str | None = None, downstream: bool = False
    ) -> RunResult:
        """Like :meth:`retry`, but queue the run for ``serve``'s workers instead of running
        it here (the API); raises :class:`RunStateError` when it cannot be retried."""
        return requeue_for_retry(self.store, run_id, task=task, downstream=downstream)

    def queue_resume(self, run_id: str) -> RunResult:
        """Like :meth:`resume` for a failed run, but queued for ``serve``'s workers."""
        return requeue_for_resume(self.store, run_id)

    def cancel(self, run_id: str, *, compensate: bool = False) -> RunResult:
        """Stop a queued or running run; with ``compensate`` (local runs) then undo what
        its succeeded tasks did. Raises :class:`RunStateError` for an ended run."""
        run = self.store.get_run(run_id)
        return self.executors.for_run(run).cancel(
            run, settings=self.settings, store=self.store, compensate_after=compensate
        )

    def compensate(self, run_id: str, *, listener: RunListener | None = None) -> RunResult:
        """Run the compensations of a failed or cancelled run's succeeded tasks, latest first."""
        return compensate_run(run_id, settings=self.settings, store=self.store, listener=listener)

    def check_compensable(self, run_id: str) -> None:
        """Raise :class:`RunStateError` unless :meth:`compensate` has something to do now
        (a failed or cancelled run, not driven, with a compensation to run)."""
        run = self.store.get_run(run_id)
        check_compensable(run, stored_spec(run), self.store)

    def reap(self) -> list[ReapedRun]:
        """Fail the open attempts of runs whose process died (leaving them resumable) and
        fire the callbacks ended runs left unfired."""
        return reap_runs(settings=self.settings, store=self.store)

    def dead_runs(self) -> list[RunRecord]:
        """Queued or running runs whose process died (none drives them; resumable)."""
        return dead_runs(settings=self.settings, store=self.store)

    def remote_runs_in_flight(self) -> list[RunRecord]:
        """Runs executing on a remote executor (Airflow) that have not ended in the store:
        each needs a follower (:meth:`execute` follows one already triggered)."""
        return remote_runs_in_flight(self.store)

    def list_runs(
        self, *, limit: int = 20, pipeline: str | None = None, warn: Warn = _ignore
    ) -> list[RunRecord]:
        """Runs newest first, unfinished remote runs brought up to date first."""
        return self._refreshed(self.store.list_runs(limit=limit, pipeline=pipeline), warn)

    def show_run(self, run_id: str, *, warn: Warn = _ignore) -> RunResult:
        """A run's status and each task's result (run id or a unique prefix)."""
        run = self.store.get_run(run_id)
        self._refreshed([run], warn)
        return RunResult.load(self.store, run.run_id)

    def read_logs(
        self,
        run_id: str,
        *,
        task: str | None = None,
        attempt: int | None = None,
        offset: int = 0,
        offsets: Offsets | None = None,
    ) -> list[AttemptLog]:
        """Each attempt's log (of ``task``, of ``attempt``), text from
        ``offsets[key]`` on (see :func:`~batchpilot.engine.logs.offset_key`), else from
        ``offset``: the store's copy of the log of an attempt run on the engine's
        thread, the local file while it exists, else its copy shipped to
        ``BATCHPILOT_LOGS_URL``.

        Raises :class:`RunNotFound`, :class:`RunStateError` naming the run's
        tasks when it has no task ``task``, :class:`RemoteLogsError` when the
        shipped copy cannot be read.
        """
        run = self.store.get_run(run_id)
        task_ids = {t.task_id for t in self.store.get_tasks(run.run_id)}
        if task is not None and task not in task_ids:
            raise RunStateError(
                f"run {run.run_id} has no task '{task}' (tasks: {', '.join(sorted(task_ids))})",
                run_id=run.run_id,
            )
        return self.executors.for_run(run).read_logs(
            run,
            settings=self.settings,
            store=self.store,
            task=task,
            attempt=attempt,
            offset=offset,
            offsets=offsets,
        )

    def follow_logs(
        self,
        run_id: str,
        *,
        task: str | None = None,
        attempt: int | None = None,
        poll_s: float = FOLLOW_POLL_S,
        sleep: Sleep = time.sleep,
        warn: Warn = _ignore,
    ) -> Iterator[AttemptLog]:
        """Each attempt's log as it grows, until the run has ended and all of it is read
        (``batchpilot logs --follow``).

        Yields every attempt once when it first appears (``offset`` 0, its text so
        far), then each piece it gains. A local run whose process died (``kill -9``)
        ends the follow too, after ``warn`` says how to go on. Raises as
        :meth:`read_logs`.
        """
        run = self.store.get_run(run_id)
        offsets: dict[str, int] = {}
        while True:
            # the state is read before the logs, so the read after the end gets all of them
            current = self._refreshed([self.store.get_run(run.run_id)], warn)[0]
            dead = current.executor == LOCAL and is_dead(current, settings=self.settings)
            for item in self.read_logs(run.run_id, task=task, attempt=attempt, offsets=offsets):
                first = item.key not in offsets
                offsets[item.key] = item.next_offset
                if first or item.text:
                    yield item
            if dead:
                warn(
                    f"run {run.run_id} is {current.status.value} but no process drives it "
                    f"(killed?): its logs end here; 'batchpilot runs reap', then "
                    f"'batchpilot resume {run.run_id}'"
                )
                return
            if current.status.is_terminal():
                return
            sleep(poll_s)

    def _refreshed(self, runs: list[RunRecord], warn: Warn) -> list[RunRecord]:
        fresh: dict[str, RunRecord] = {}
        for name in dict.fromkeys(r.executor for r in runs if not r.status.is_terminal()):
            try:
                executor = self.executors.get(name)
            except UnknownExecutor:
                continue  # written by a newer batchpilot: shown as stored
            mine = [r for r in runs if r.executor == name]
            for record in executor.refresh(mine, store=self.store, warn=warn):
                fresh[record.run_id] = record
        return [fresh.get(r.run_id, r) for r in runs]


def run_summary(run: RunSummaryRecord) -> dict[str, Any]:
    """A run as one row of ``runs list --output json``."""
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "needs_attention": run.needs_attention,
        "executor": run.executor,
    }
