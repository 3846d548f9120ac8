"""The run's tasks in memory while it runs: what the scheduling loop looks at.

Each task's state, attempt number and output; per task, how many of its
upstream tasks succeeded, failed or were skipped (kept current as states
change, so a 1,000-way fan-in is never re-scanned); the tasks whose trigger
rule must be evaluated again (``dirty``), those ready to start (a heap in
pipeline order), and those waiting to retry. The store is the truth; the
board mirrors what the executor wrote there.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from batchpilot.engine.outputs import TaskOutput
from batchpilot.engine.transitions import when_ready_to_decide
from batchpilot.engine.trigger_rules import Readiness, outcome_bucket
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import TaskState


class TaskBoard:
    """States, attempts, outputs, upstream counts and the ready/dirty/retry queues."""

    def __init__(
        self,
        spec: PipelineSpec,
        states: Mapping[str, TaskState],
        attempts: Mapping[str, int],
        outputs: Mapping[str, TaskOutput],
    ) -> None:
        self.states = dict(states)
        self.attempts = dict(attempts)
        self.outputs = dict(outputs)
        self.nodes = {n.id: n for n in spec.nodes}
        self.children = spec.downstream()
        self._position = {n.id: i for i, n in enumerate(spec.nodes)}
        #: per task: how many upstream tasks succeeded, failed, were skipped
        self.counts = {n.id: [0, 0, 0] for n in spec.nodes}
        for node in spec.nodes:
            for parent in node.upstream:
                bucket = outcome_bucket(self.states[parent])
                if bucket is not None:
                    self.counts[node.id][bucket] += 1
        self.ready: list[tuple[int, str]] = []
        self.queued: set[str] = set()
        #: monotonic time at which each task waiting to retry is due
        self.retry_at: dict[str, float] = {}
        self._dirty = [
            (self._position[t], t) for t, s in self.states.items() if s is TaskState.PENDING
        ]
        heapq.heapify(self._dirty)

    def set_state(self, task_id: str, state: TaskState) -> None:
        """Change a task's state, keeping its children's upstream counts current."""
        before = outcome_bucket(self.states[task_id])
        after = outcome_bucket(state)
        self.states[task_id] = state
        if before != after:
            for child in self.children[task_id]:
                if before is not None:
                    self.counts[child][before] -= 1
                if after is not None:
                    self.counts[child][after] += 1

    def mark_dirty(self, task_ids: Iterable[str]) -> None:
        """Evaluate the trigger rules of ``task_ids`` at the next decision."""
        for task_id in task_ids:
            heapq.heappush(self._dirty, (self._position[task_id], task_id))

    def decide(self) -> list[tuple[str, str]]:
        """Evaluate the dirty tasks' trigger rules in pipeline (topological) order: those
        that may run join the ready heap; those that never can are skipped here (their
        state changes) and returned with the reason, their children evaluated in turn."""
        skipped: list[tuple[str, str]] = []
        seen: set[str] = set()
        while self._dirty:
            _, task_id = heapq.heappop(self._dirty)
            if task_id in seen or task_id in self.queued:
                continue
            seen.add(task_id)
            if self.states[task_id] is not TaskState.PENDING:
                continue
            node = self.nodes[task_id]
            decision = when_ready_to_decide(
                task_id,
                rule=node.trigger_rule,
                upstream=node.upstream,
                counts=self.counts[task_id],
                states=self.states,
                children=self.children,
            )
            if decision.readiness is Readiness.RUN:
                heapq.heappush(self.ready, (self._position[task_id], task_id))
                self.queued.add(task_id)
            elif decision.readiness is Readiness.SKIP:
                self.set_state(task_id, TaskState.SKIPPED)
                skipped.append((task_id, decision.reason or "skipped"))
                self.mark_dirty(decision.dirty)
        return skipped

    def release_due_retries(self, now: float) -> None:
        """Tasks whose retry delay has passed become ready."""
        for task_id in [t for t, due in self.retry_at.items() if due <= now]:
            del self.retry_at[task_id]
            heapq.heappush(self.ready, (self._position[task_id], task_id))

    def pop_ready(self) -> str:
        """The ready task that comes first in the pipeline, taken off the heap."""
        _, task_id = heapq.heappop(self.ready)
        self.queued.discard(task_id)
        return task_id

    def next_attempt(self, task_id: str) -> int:
        """Count a new attempt of ``task_id`` and return its number."""
        attempt = self.attempts.get(task_id, 0) + 1
        self.attempts[task_id] = attempt
        return attempt

    def clear_waiting(self) -> None:
        """Forget every task waiting to start or retry (the run is cancelled)."""
        self.retry_at.clear()
        self.ready.clear()
        self.queued.clear()
        self._dirty.clear()

    def has_waiting(self) -> bool:
        """True while a task is ready to start or waiting to retry."""
        return bool(self.ready or self.retry_at)
