"""What a task's attempt sees, as the executor hands it to a worker: its inputs (or,
started early, the output it follows), its atomic group's connection, its rerun count
and its row counter; and which tasks' attempts run on the engine's own thread instead
(:func:`never_blocking_tasks`). The attempt itself runs on :mod:`batchpilot.engine.attempt`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchpilot.artifacts import ArtifactStore
from batchpilot.artifacts.live import LiveOutput
from batchpilot.engine.attempt import AttemptPlan, EarlyInputs, run_attempt
from batchpilot.engine.context import RunContext
from batchpilot.engine.handles import AttemptHandle, AttemptOutcome
from batchpilot.engine.listener import RunListener
from batchpilot.engine.outputs import TaskOutput, upstream_inputs
from batchpilot.engine.transactions import OpenTransactions, group_token
from batchpilot.errors import SpecError
from batchpilot.spec.model import PipelineSpec
from batchpilot.steps.registry import StepRegistry


class TaskDispatch:
    """Builds and runs the attempts of a run's tasks on worker threads."""

    def __init__(
        self,
        run: RunContext,
        *,
        outputs: Mapping[str, TaskOutput],
        attempts: Mapping[str, int],
        transactions: OpenTransactions,
        listener: RunListener,
    ) -> None:
        self._run = run
        self._outputs = outputs
        self._attempts = attempts
        self._transactions = transactions
        self._listener = listener
        self._artifacts = ArtifactStore(run.artifacts_dir)

    def run_task_attempt(
        self,
        handle: AttemptHandle,
        *,
        live_input: LiveOutput | None = None,
        live_output: LiveOutput | None = None,
    ) -> AttemptOutcome:
        """Run one attempt of a task (on a worker thread); never raises.

        ``live_input``: for an attempt that starts early, the upstream output it
        follows; ``live_output``: this attempt's output, followed by such a consumer.
        """
        return run_attempt(self._run, self.plan(handle, live_input, live_output), handle)

    def plan(
        self,
        handle: AttemptHandle,
        live_input: LiveOutput | None,
        live_output: LiveOutput | None,
    ) -> AttemptPlan:
        """The attempt's plan: what its step sees besides the run."""
        node = self._run.nodes[handle.task_id]
        go = handle.go
        listener = self._listener

        def resolve() -> tuple[Any, Any]:
            return upstream_inputs(node.upstream, self._outputs)

        def progress(task_id: str, rows: int) -> None:
            if go is None or go.is_set():  # an early attempt's task is still pending
                listener.task_rows_reported(task_id, rows)

        header = f"run {self._run.run_id}, task {node.id} ({node.type}), attempt {handle.attempt}"
        if go is None:
            inputs, side_inputs = resolve()
            early = None
        else:
            inputs, side_inputs = {}, {}
            early = EarlyInputs(live=live_input, started=go, resolve=resolve)
            if live_input is not None:
                header += (
                    f"; started early, while '{live_input.task_id}' runs: it reads that output "
                    f"as it is written and commits nothing until '{live_input.task_id}' "
                    "succeeded"
                )
        return AttemptPlan(
            node=node,
            number=handle.attempt,
            artifacts=self._artifacts,
            inputs=inputs,
            side_inputs=side_inputs,
            early=early,
            live_output=live_output,
            open_transaction=self._transaction_opener(node.id),
            reruns=self._run.reruns.get(node.id, 0),
            progress=progress,
            header=header,
        )

    def _transaction_opener(self, task_id: str) -> Any:
        """For a member of an atomic group: opens (or joins) the group's transaction on the
        attempt's thread. The one place a step gets its group's connection."""
        group = self._transactions.member_of.get(task_id)
        if group is None:
            return None
        token = group_token(group, self._attempts.get(group.first, 1))
        return lambda: self._transactions.connection_for(group, token)


def never_blocking_tasks(
    spec: PipelineSpec, registry: StepRegistry, *, grouped: Mapping[str, object]
) -> frozenset[str]:
    """The tasks whose step declares (itself, not by inheritance) that it never blocks,
    outside atomic groups (whose connection an attempt opens on its own thread)."""
    found = set()
    for node in spec.nodes:
        try:
            step_class = registry.get(node.type)
        except SpecError:
            continue  # reported when the attempt builds its step
        if step_class.__dict__.get("never_blocks", False) and node.id not in grouped:
            found.add(node.id)
    return frozenset(found)
