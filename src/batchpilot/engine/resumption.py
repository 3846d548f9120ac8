"""Continuing a run that exists: resume and retry re-run its tasks in the same run.

What a dead process left open is closed (its failure callbacks queued), atomic
groups are reconciled with their commit records in the target database, and
the executor starts from the stored states and outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from batchpilot.connections import ConnectionRegistry
from batchpilot.engine.callbacks import task_callbacks
from batchpilot.engine.context import RunContext
from batchpilot.engine.listener import RunListener
from batchpilot.engine.outputs import TaskOutput
from batchpilot.engine.ownership import claim_or_refuse
from batchpilot.engine.preflight import check_pipeline, with_pipeline_connections
from batchpilot.engine.results import RunResult
from batchpilot.engine.runner import execute_run
from batchpilot.engine.transactions import OpenTransactions, group_token, run_groups
from batchpilot.errors import SpecError
from batchpilot.server_sessions import end_orphaned_sessions
from batchpilot.settings import Settings
from batchpilot.spec.limits import check_workers
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import AttemptKind, TaskState
from batchpilot.steps.registry import StepRegistry, default_registry
from batchpilot.store import RunRecord, RunStore, TaskRecord


def continue_run(
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
    """Run again, in the same run, the tasks ``pick`` chooses (plus what atomic groups
    need), after closing what a dead process left open. Raises :class:`RunStateError`
    if a live process holds the run, :class:`SpecError` for a pipeline that changed
    shape or no longer checks."""
    check_workers(workers)
    registry = registry or default_registry()
    owner = claim_or_refuse(store, run, settings)
    if run.status.is_terminal():
        store.drop_cancel_request(run.run_id)  # the request that ended it is spent
    try:
        spec = spec or spec_for_resume(run.source_path, run.spec, load_file)
        tasks = {t.task_id: t for t in store.get_tasks(run.run_id)}
        _refuse_new_nodes(spec, tasks)
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
        committed = _reconcile_groups(spec, run, tasks, to_run, settings, registry)
        _record_committed_groups(store, spec, run.run_id, tasks, committed)
        close_dead_attempts(store, spec, run.run_id, settings.connections)
        states, attempts, outputs = _restored_state(spec, tasks, to_run, committed)
        store.set_task_states(run.run_id, sorted(to_run), TaskState.PENDING)
        context = RunContext.of_stored_run(
            run,
            spec,
            settings=settings,
            registry=registry,
            store=store,
            owner=owner,
            generation=next_generation(store, run.run_id),
            reruns=_reruns(store, run.run_id, to_run),
        )
    except BaseException:  # a refusal, a store error or a Ctrl-C before the engine starts
        store.release_run(run.run_id, owner)
        raise
    execute_run(context, states, attempts, outputs, listener=listener, workers=workers)
    return RunResult.load(store, run.run_id)


def _refuse_new_nodes(spec: PipelineSpec, tasks: Mapping[str, TaskRecord]) -> None:
    missing = [n for n in spec.node_ids if n not in tasks]
    if missing:
        raise SpecError(
            f"the pipeline now has nodes the run does not know ({', '.join(missing)}); "
            "start a new run instead",
            path=spec.source_path,
        )


def _record_committed_groups(
    store: RunStore,
    spec: PipelineSpec,
    run_id: str,
    tasks: Mapping[str, TaskRecord],
    committed: set[str],
) -> None:
    """A group committed, then the process died before recording it: its members are
    done, and their on_success callbacks are due (queued once, by id)."""
    if not committed:
        return
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


def _restored_state(
    spec: PipelineSpec,
    tasks: Mapping[str, TaskRecord],
    to_run: set[str],
    committed: set[str],
) -> tuple[dict[str, TaskState], dict[str, int], dict[str, TaskOutput]]:
    """The tasks' states, attempt counts and outputs the executor starts from: pending
    for those to run, the stored ones (with the outputs of successes) for the rest."""
    states: dict[str, TaskState] = {}
    attempts: dict[str, int] = {}
    outputs: dict[str, TaskOutput] = {}
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
                outputs[task_id] = TaskOutput.from_json(
                    record.output,
                    rows_in=record.rows_in,
                    rows_out=record.rows_out,
                    rows_rejected=record.rows_rejected,
                )
    return states, attempts, outputs


def _reruns(store: RunStore, run_id: str, to_run: set[str]) -> dict[str, int]:
    """Per task to run, how many times it succeeded before. A task run again after it
    had succeeded (retry --task) is a new load, not a repeat of the recorded one; a
    resume never re-runs a success, so it keeps the same key."""
    return dict(
        Counter(
            a.task_id
            for a in store.get_attempts(run_id)
            if a.task_id in to_run and a.kind == AttemptKind.RUN and a.state is TaskState.SUCCESS
        )
    )


def _reconcile_groups(
    spec: PipelineSpec,
    run: RunRecord,
    tasks: dict[str, TaskRecord],
    to_run: set[str],
    settings: Settings,
    registry: StepRegistry,
) -> set[str]:
    """Decide what atomic groups need, from their commit records in the target database.

    A group that did not commit runs again whole (a crash rolled it back); a
    group that committed before the store recorded it counts as done. Adds to
    ``to_run`` in place; returns the members to record as succeeded.
    """
    groups = run_groups(spec, run.params, run.ds, run.run_id, registry)
    if not groups:
        return set()
    transactions = OpenTransactions(
        pipeline=spec.name,
        run_id=run.run_id,
        groups=groups,
        connections=settings.connections,
        registry=registry,
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


def close_dead_attempts(
    store: RunStore, spec: PipelineSpec, run_id: str, connections: ConnectionRegistry
) -> list[str]:
    """Close attempts a dead process left open, queueing their failure callbacks in the
    same transaction; returns the tasks whose attempt was closed.

    First, the database sessions the dead process opened are ended on their servers, so
    a statement it left running (a long query, a COPY holding locks) stops now.
    """
    end_orphaned_sessions(store.server_sessions(run_id), connections)
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
        if record.attempt == attempt and record.kind == AttemptKind.RUN:
            return record.log_path
    return None


def next_generation(store: RunStore, run_id: str) -> int:
    """How many times this run has ended before, plus one (keys run-level callbacks)."""
    seen = [c.context.get("attempt") for c in store.get_callbacks(run_id) if c.task_id is None]
    return max([g for g in seen if isinstance(g, int)], default=0) + 1


def spec_for_resume(
    source_path: str | None,
    stored: dict[str, Any],
    load_file: Callable[[str], PipelineSpec] | None,
) -> PipelineSpec:
    """The pipeline to continue a run with: re-read from its file when it still exists
    (so a fixed bug takes effect), else rebuilt from the copy stored with the run."""
    if source_path and load_file is not None and Path(source_path).exists():
        return load_file(source_path)
    return build_pipeline(stored, source_path=source_path)
