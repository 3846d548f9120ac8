"""Starting and resuming runs: the engine's entry points."""

from __future__ import annotations

import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from batchpilot.engine.actions import ActionRunner
from batchpilot.engine.callbacks import fire_pending_callbacks, task_callbacks
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import check_pipeline, merged_params, with_pipeline_connections
from batchpilot.engine.results import RunResult
from batchpilot.engine.runner import RunExecutor
from batchpilot.engine.transactions import OpenTransactions, group_token, run_groups
from batchpilot.errors import RunStateError, SpecError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document
from batchpilot.states import RunStatus, TaskState
from batchpilot.steps.registry import StepRegistry, default_registry
from batchpilot.store import RunRecord, RunStore, TaskRecord


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20261121T203000-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def owner_id() -> str:
    """Identifies this process as a run's owner: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid:token``) is a process of this host that is gone."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: only its heartbeat can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def start_run(
    spec: PipelineSpec,
    *,
    settings: Settings,
    store: RunStore,
    params: Mapping[str, Any] | None = None,
    ds: str | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
    workers: int | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Check the pipeline, create a run and execute it to the end.

    Raises :class:`SpecErrors` (before any run is created) for invalid input,
    and :class:`RunInterrupted` if stopped by a signal.
    """
    registry = registry or default_registry()
    settings = with_pipeline_connections(settings, spec)
    run_params = merged_params(spec, params or {})
    ds = ds or date.today().isoformat()
    check_pipeline(
        spec,
        registry,
        settings.connections,
        params=run_params,
        ds=ds,
        output_roots=settings.output_roots,
    )
    run_id = run_id or new_run_id()
    owner = owner_id()
    store.create_run(
        run_id=run_id,
        pipeline=spec.name,
        spec=spec_to_document(spec),
        params=_jsonable_params(run_params),
        ds=ds,
        source_path=str(Path(spec.source_path).resolve()) if spec.source_path else None,
        task_ids=spec.node_ids,
        owner=owner,
    )
    executor = RunExecutor(
        spec=spec,
        run_id=run_id,
        params=run_params,
        ds=ds,
        store=store,
        settings=settings,
        registry=registry,
        owner=owner,
        listener=listener,
        workers=workers,
    )
    states = {t: TaskState.PENDING for t in spec.node_ids}
    executor.execute(states, {}, {})
    return RunResult.load(store, run_id)


def resume_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    spec: PipelineSpec | None = None,
    load_file: Callable[[str], PipelineSpec] | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
    workers: int | None = None,
) -> RunResult:
    """Continue an interrupted or failed run, re-running only what did not succeed.

    The pipeline is ``spec`` if given; else re-read with ``load_file`` from its
    file when that still exists (so a fixed bug takes effect); else rebuilt
    from the copy stored with the run. Attempts a killed process left open
    are closed as failed and their ``on_failure`` callbacks fire. Raises
    :class:`RunStateError` if the run succeeded or was cancelled, or another
    live process drives it; :class:`RunNotFound` for an unknown id. An ended
    run whose process died before its callbacks fired only fires them.
    """
    run = store.get_run(run_id)
    ended = run.status in (RunStatus.SUCCESS, RunStatus.CANCELLED)
    if ended and store.get_callbacks(run_id, states=("pending", "running")):
        # Its process died after the run ended but before its callbacks fired.
        return _fire_leftover_callbacks(
            run, settings=settings, store=store, spec=spec, load_file=load_file, registry=registry
        )
    if run.status is RunStatus.SUCCESS:
        raise RunStateError(
            f"run {run.run_id} already succeeded; nothing to resume", run_id=run.run_id
        )
    if run.status is RunStatus.CANCELLED:
        raise RunStateError(
            f"run {run.run_id} was cancelled; use 'batchpilot retry {run.run_id}' to run "
            "its tasks again",
            run_id=run.run_id,
        )

    def not_succeeded(spec: PipelineSpec, tasks: dict[str, TaskRecord]) -> set[str]:
        return {t for t in spec.node_ids if tasks[t].state is not TaskState.SUCCESS}

    return _continue_run(
        run,
        not_succeeded,
        settings=settings,
        store=store,
        spec=spec,
        load_file=load_file,
        registry=registry,
        listener=listener,
        workers=workers,
    )


def _fire_leftover_callbacks(
    run: RunRecord,
    *,
    settings: Settings,
    store: RunStore,
    spec: PipelineSpec | None,
    load_file: Callable[[str], PipelineSpec] | None,
    registry: StepRegistry | None,
) -> RunResult:
    owner = claim_or_refuse(store, run, settings)
    try:
        spec = spec or _spec_for_resume(run.source_path, run.spec, load_file)
        settings = with_pipeline_connections(settings, spec)
        runner = ActionRunner(
            spec=spec,
            run_id=run.run_id,
            params=run.params,
            ds=run.ds,
            settings=settings,
            registry=registry or default_registry(),
            run_dir=settings.runs_dir / run.run_id,
        )
        fire_pending_callbacks(store, runner)
    finally:
        store.release_run(run.run_id, owner)
    return RunResult.load(store, run.run_id)


def retry_run(
    run_id: str,
    *,
    settings: Settings,
    store: RunStore,
    task_id: str | None = None,
    downstream: bool = False,
    spec: PipelineSpec | None = None,
    load_file: Callable[[str], PipelineSpec] | None = None,
    registry: StepRegistry | None = None,
    listener: RunListener | None = None,
    workers: int | None = None,
) -> RunResult:
    """Run tasks of a finished run again in the same run, like clearing tasks in Airflow.

    Without ``task_id``: every task that did not succeed. With it: that task
    (even if it succeeded), everything after it when ``downstream``, and in
    any case the tasks after it that did not succeed. Earlier attempts and
    their logs stay. Raises :class:`RunStateError` for a run still running or
    when there is nothing to retry.
    """
    run = store.get_run(run_id)
    if not run.status.is_terminal():
        raise RunStateError(
            f"run {run.run_id} is {run.status.value}; only a finished run can be retried "
            "(use 'batchpilot resume' for an interrupted one)",
            run_id=run.run_id,
        )

    def chosen(spec: PipelineSpec, tasks: dict[str, TaskRecord]) -> set[str]:
        if task_id is None:
            picked = {t for t in spec.node_ids if tasks[t].state is not TaskState.SUCCESS}
            if not picked:
                raise RunStateError(
                    f"run {run.run_id} has no failed task to retry", run_id=run.run_id
                )
            return picked
        if task_id not in spec.node_ids:
            raise RunStateError(
                f"run {run.run_id} has no task '{task_id}' (tasks: {', '.join(spec.node_ids)})",
                run_id=run.run_id,
            )
        after = _descendants(spec, task_id)
        picked = {task_id} | {
            t for t in after if downstream or tasks[t].state is not TaskState.SUCCESS
        }
        return picked

    return _continue_run(
        run,
        chosen,
        settings=settings,
        store=store,
        spec=spec,
        load_file=load_file,
        registry=registry,
        listener=listener,
        workers=workers,
    )


def _descendants(spec: PipelineSpec, task_id: str) -> set[str]:
    children = spec.downstream()
    found: set[str] = set()
    stack = [task_id]
    while stack:
        for child in children[stack.pop()]:
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _continue_run(
    run: RunRecord,
    pick: Callable[[PipelineSpec, dict[str, TaskRecord]], set[str]],
    *,
    settings: Settings,
    store: RunStore,
    spec: PipelineSpec | None,
    load_file: Callable[[str], PipelineSpec] | None,
    registry: StepRegistry | None,
    listener: RunListener | None,
    workers: int | None,
) -> RunResult:
    registry = registry or default_registry()
    run_id = run.run_id
    owner = claim_or_refuse(store, run, settings)
    try:
        spec = spec or _spec_for_resume(run.source_path, run.spec, load_file)
        tasks = {t.task_id: t for t in store.get_tasks(run_id)}
        missing = [n for n in spec.node_ids if n not in tasks]
        if missing:
            raise SpecError(
                f"the pipeline now has nodes the run does not know ({', '.join(missing)}); "
                "start a new run instead",
                path=spec.source_path,
            )
        settings = with_pipeline_connections(settings, spec)
        check_pipeline(
            spec,
            registry,
            settings.connections,
            params=run.params,
            ds=run.ds,
            output_roots=settings.output_roots,
        )
        to_run = pick(spec, tasks)
        committed = _reconcile_groups(spec, run, tasks, to_run, settings)
    except BaseException:
        store.release_run(run_id, owner)
        raise
    if committed:
        # The group committed, then the process died before recording it: its members
        # are done, and their on_success callbacks are due (queued once, by id).
        with store.write() as tx:
            tx.set_task_states(run_id, sorted(committed), TaskState.SUCCESS)
            callbacks = []
            for task_id in sorted(committed):
                attempt = tasks[task_id].attempts
                callbacks += task_callbacks(
                    spec,
                    event="on_success",
                    task_id=task_id,
                    attempt=attempt,
                    error=None,
                    log_path=attempt_log_path(store, run_id, task_id, attempt),
                    state=TaskState.SUCCESS.value,
                )
            tx.add_callbacks(run_id, callbacks)
    close_dead_attempts(store, spec, run_id)
    states: dict[str, TaskState] = {}
    attempts: dict[str, int] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for task_id in spec.node_ids:
        record = tasks[task_id]
        attempts[task_id] = record.attempts
        if task_id in to_run:
            states[task_id] = TaskState.PENDING
        elif task_id in committed:
            states[task_id] = TaskState.SUCCESS
        else:
            states[task_id] = record.state
            if record.state is TaskState.SUCCESS:
                outputs[task_id] = record.output or {}
    store.set_task_states(run_id, sorted(to_run), TaskState.PENDING)
    # A task run again after it had succeeded (retry --task) is a new load, not a repeat
    # of the recorded one; a resume never re-runs a success, so it keeps the same key.
    reruns = Counter(
        a.task_id
        for a in store.get_attempts(run_id)
        if a.task_id in to_run and a.kind == "run" and a.state is TaskState.SUCCESS
    )
    executor = RunExecutor(
        spec=spec,
        run_id=run_id,
        params=run.params,
        ds=run.ds,
        store=store,
        settings=settings,
        registry=registry,
        owner=owner,
        listener=listener,
        workers=workers,
        generation=next_generation(store, run_id),
        reruns=dict(reruns),
    )
    executor.execute(states, attempts, outputs)
    return RunResult.load(store, run_id)


def _reconcile_groups(
    spec: PipelineSpec,
    run: RunRecord,
    tasks: dict[str, TaskRecord],
    to_run: set[str],
    settings: Settings,
) -> set[str]:
    """Decide what atomic groups need, from their commit records in the target database.

    A group that did not commit runs again whole (a crash rolled it back); a
    group that committed before the store recorded it counts as done. Adds to
    ``to_run`` in place; returns the members to record as succeeded.
    """
    groups = run_groups(spec, run.params, run.ds, run.run_id)
    if not groups:
        return set()
    transactions = OpenTransactions(
        pipeline=spec.name, run_id=run.run_id, groups=groups, connections=settings.connections
    )
    done: set[str] = set()
    for group in groups.values():
        members = set(group.members)
        first_attempt = tasks[group.first].attempts
        committed = first_attempt > 0 and (
            transactions.committed_token(group) == group_token(group, first_attempt)
        )
        all_succeeded = all(tasks[m].state is TaskState.SUCCESS for m in members)
        if committed and not all_succeeded:
            done |= members  # killed between the commit and the store's record of it
            to_run -= members
        elif not committed and (members & to_run or not all_succeeded):
            to_run |= members
        elif members & to_run:
            to_run |= members  # a retry of one member re-runs the whole group
    return done


def claim_or_refuse(store: RunStore, run: RunRecord, settings: Settings) -> str:
    """Take ownership of the run for this process; raises :class:`RunStateError` if a
    live process holds it."""
    owner = owner_id()
    dead = [run.owner] if run.owner and owner_is_dead(run.owner) else []
    if not store.claim_run(
        run.run_id, owner, stale_after_s=settings.stale_after_s, dead_owners=dead
    ):
        raise RunStateError(
            f"run {run.run_id} is already being run or resumed by another process ({run.owner})",
            run_id=run.run_id,
        )
    return owner


def close_dead_attempts(store: RunStore, spec: PipelineSpec, run_id: str) -> list[str]:
    """Close attempts a dead process left open, queueing their failure callbacks in the
    same transaction; returns the tasks whose attempt was closed."""
    error = "the process running this attempt died (killed or out of memory)"
    with store.write() as tx:
        closed = tx.close_open_attempts(run_id, error=error)
        callbacks = []
        for task_id, attempt in closed:
            if task_id in spec.node_ids:
                log_path = attempt_log_path(store, run_id, task_id, attempt)
                callbacks.extend(
                    task_callbacks(
                        spec,
                        event="on_failure",
                        task_id=task_id,
                        attempt=attempt,
                        error=error,
                        log_path=log_path,
                        state=TaskState.FAILED.value,
                    )
                )
        tx.add_callbacks(run_id, callbacks)
    return [task_id for task_id, _ in closed]


def attempt_log_path(store: RunStore, run_id: str, task_id: str, attempt: int) -> str | None:
    """The log file recorded for an attempt."""
    for record in store.get_attempts(run_id, task_id):
        if record.attempt == attempt and record.kind == "run":
            return record.log_path
    return None


def next_generation(store: RunStore, run_id: str) -> int:
    """How many times this run has ended before, plus one (keys run-level callbacks)."""
    seen = [c.context.get("attempt") for c in store.get_callbacks(run_id) if c.task_id is None]
    return max([g for g in seen if isinstance(g, int)], default=0) + 1


def _spec_for_resume(
    source_path: str | None,
    stored: dict[str, Any],
    load_file: Callable[[str], PipelineSpec] | None,
) -> PipelineSpec:
    if source_path and load_file is not None and Path(source_path).exists():
        return load_file(source_path)
    return build_pipeline(stored, source_path=source_path)


def _jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        out[key] = (
            value
            if isinstance(value, str | int | float | bool | type(None) | list | dict)
            else str(value)
        )
    return out
