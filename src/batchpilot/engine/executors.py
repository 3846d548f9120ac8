"""Where a run executes: one interface, implemented for this machine and for Airflow.

The engine services, the CLI, the scheduler and the REST API start, follow,
cancel and read runs through an :class:`Executor`, whichever place runs them.
A run record names its executor (``RunRecord.executor``); :class:`Executors`
finds the implementation by that name.

- :class:`LocalExecutor` (``local``) runs the pipeline in this process with
  the embedded engine.
- ``batchpilot.airflow.executor.AirflowExecutor`` (``airflow``) deploys the
  pipeline's DAG to an Airflow deployment, triggers it and mirrors it into the
  store over Airflow's REST API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from batchpilot.engine.control import cancel_run
from batchpilot.engine.listener import RunListener
from batchpilot.engine.log_shipping import remote_logs_of
from batchpilot.engine.logs import AttemptLog, Offsets, read_local_logs
from batchpilot.engine.queued import execute_stored_run
from batchpilot.engine.results import RunResult
from batchpilot.engine.runs import start_run
from batchpilot.errors import BatchpilotError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunRecord, RunStore

LOCAL = "local"
AIRFLOW = "airflow"
#: How often a follower of a run driven by another process reads the store.
FOLLOW_POLL_S = 0.5

#: Receives one line saying why stored state is shown as last seen (Airflow unreachable…).
Warn = Callable[[str], None]
Sleep = Callable[[float], None]


class UnknownExecutor(BatchpilotError):
    """No executor has the requested name (``--on``, an API request, or a run record)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        super().__init__(f"unknown executor '{name}' (known: {', '.join(sorted(known))})")


@runtime_checkable
class Executor(Protocol):
    """A place runs execute. Every method raises :class:`BatchpilotError` subclasses only."""

    #: The name run records keep in ``RunRecord.executor``.
    name: str

    def start(
        self,
        spec: PipelineSpec,
        *,
        settings: Settings,
        store: RunStore,
        params: Mapping[str, Any],
        ds: str | None,
        workers: int | None,
        listener: RunListener,
        run_id: str | None = None,
    ) -> RunResult:
        """Check the pipeline, create a run (``run_id`` if given, else a new id), and
        return when the run has ended.

        Raises :class:`SpecError` before any run is recorded for invalid input.
        """
        ...

    def check_available(self) -> None:
        """Return if this executor can start runs; else raise a :class:`BatchpilotError`
        naming what to set (checked before a run is queued for it)."""
        ...

    def execute_queued(
        self,
        run: RunRecord,
        *,
        settings: Settings,
        store: RunStore,
        listener: RunListener,
        workers: int | None,
    ) -> RunResult:
        """Drive a run created queued for this executor (``serve``'s worker) to its end
        with the pipeline stored with it; also a run whose driving process died."""
        ...

    def follow(self, run: RunRecord, *, store: RunStore, listener: RunListener) -> RunResult:
        """Wait for a run started elsewhere to end, telling ``listener`` what changes."""
        ...

    def refresh(self, runs: list[RunRecord], *, store: RunStore, warn: Warn) -> list[RunRecord]:
        """The stored runs brought up to date (same order); on failure ``warn`` is told
        once and the stored state is returned as it is."""
        ...

    def cancel(
        self, run: RunRecord, *, settings: Settings, store: RunStore, compensate_after: bool
    ) -> RunResult:
        """Stop a queued or running run; raises :class:`RunStateError` for an ended one."""
        ...

    def read_logs(
        self,
        run: RunRecord,
        *,
        settings: Settings,
        store: RunStore,
        task: str | None,
        attempt: int | None,
        offset: int,
        offsets: Offsets | None = None,
    ) -> list[AttemptLog]:
        """Each attempt's log (filtered by ``task`` and ``attempt``), text from
        ``offsets[log_path]`` on, else from ``offset``."""
        ...


class LocalExecutor:
    """Runs pipelines in this process with the embedded engine; state lives in the store."""

    name = LOCAL

    def __init__(self, *, poll_s: float = FOLLOW_POLL_S, sleep: Sleep = time.sleep) -> None:
        self.poll_s = poll_s
        self.sleep = sleep

    def start(
        self,
        spec: PipelineSpec,
        *,
        settings: Settings,
        store: RunStore,
        params: Mapping[str, Any],
        ds: str | None,
        workers: int | None,
        listener: RunListener,
        run_id: str | None = None,
    ) -> RunResult:
        """Run the pipeline to the end here; raises :class:`RunInterrupted` on Ctrl-C/SIGTERM."""
        return start_run(
            spec,
            settings=settings,
            store=store,
            params=params,
            ds=ds,
            workers=workers,
            listener=listener,
            run_id=run_id,
        )

    def check_available(self) -> None:
        """This machine can always run pipelines."""

    def execute_queued(
        self,
        run: RunRecord,
        *,
        settings: Settings,
        store: RunStore,
        listener: RunListener,
        workers: int | None,
    ) -> RunResult:
        """Run it here (see :func:`execute_stored_run`)."""
        return execute_stored_run(
            run.run_id, settings=settings, store=store, listener=listener, workers=workers
        )

    def follow(self, run: RunRecord, *, store: RunStore, listener: RunListener) -> RunResult:
        """Read the store until the run ends (another process drives it)."""
        return follow_stored_run(
            store, run.run_id, listener=listener, poll_s=self.poll_s, sleep=self.sleep
        )

    def refresh(self, runs: list[RunRecord], *, store: RunStore, warn: Warn) -> list[RunRecord]:
        """Local runs are always up to date in the store."""
        return runs

    def cancel(
        self, run: RunRecord, *, settings: Settings, store: RunStore, compensate_after: bool
    ) -> RunResult:
        """Ask the driving process to stop (or cancel directly when it is gone)."""
        return cancel_run(
            run.run_id, settings=settings, store=store, compensate_after=compensate_after
        )

    def read_logs(
        self,
        run: RunRecord,
        *,
        settings: Settings,
        store: RunStore,
        task: str | None,
        attempt: int | None,
        offset: int,
        offsets: Offsets | None = None,
    ) -> list[AttemptLog]:
        """The attempts' log files under the run's folder; once one is gone, its copy
        shipped to ``BATCHPILOT_LOGS_URL`` (raises :class:`RemoteLogsError` when that
        storage cannot be read)."""
        return read_local_logs(
            store,
            run,
            task=task,
            attempt=attempt,
            offset=offset,
            offsets=offsets,
            remote=remote_logs_of(settings),
        )


def follow_stored_run(
    store: RunStore,
    run_id: str,
    *,
    listener: RunListener,
    poll_s: float = FOLLOW_POLL_S,
    sleep: Sleep = time.sleep,
) -> RunResult:
    """Tell ``listener`` each task state the store shows until the run ends; its result.

    Raises :class:`RunNotFound` for an unknown run id.
    """
    run = store.get_run(run_id)
    spec = build_pipeline(run.spec, source_path=run.source_path)
    known: dict[str, TaskState] = {t.task_id: t.state for t in store.get_tasks(run.run_id)}
    listener.run_started(run.run_id, spec, dict(known))
    status = RunStatus.UNKNOWN
    try:
        while True:
            # The run first: once it has ended, the tasks read next are their final states
            # (a run ends after its tasks), so a follower never misses the last ones.
            current = store.get_run(run.run_id)
            for task in store.get_tasks(run.run_id):
                if known.get(task.task_id) is not task.state:
                    known[task.task_id] = task.state
                    listener.task_state_changed(
                        task.task_id, task.state, attempt=task.attempts, error=task.error
                    )
            if current.status.is_terminal():
                status = current.status
                return RunResult.load(store, run.run_id)
            sleep(poll_s)
    finally:
        listener.run_finished(run.run_id, status)


class Executors:
    """The executors this installation knows, found by name."""

    def __init__(self, executors: Iterable[Executor]) -> None:
        self._by_name = {e.name: e for e in executors}

    def names(self) -> list[str]:
        """The known names, sorted."""
        return sorted(self._by_name)

    def get(self, name: str) -> Executor:
        """The executor called ``name``; raises :class:`UnknownExecutor`."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownExecutor(name, self._by_name) from None

    def for_run(self, run: RunRecord) -> Executor:
        """The executor that drives ``run``; raises :class:`UnknownExecutor`."""
        return self.get(run.executor)
