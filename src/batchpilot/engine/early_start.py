"""Attempts that start before their task is ready, to overlap a load with its extract.

A task whose step declares ``starts_early`` and whose only upstream task (with
the default ``all_success`` rule, outside a transaction group) has just
started gets an attempt at once, on a free worker. That attempt reads the
upstream output as it is written and prepares its work (a COPY into an open
transaction), but the store still holds the task as ``pending``: nothing is
recorded for it, and its step waits before it commits.

Then either the upstream succeeds, and the engine *begins* the attempt: it
records it as started (the task is ``running``) and lets the step commit; or
the upstream fails, is retried, or the run stops, and the attempt is aborted:
stopped, its transaction rolled back, its log deleted, as if it never ran. An
early attempt that fails by itself before it could begin is discarded too, and
the task later runs the ordinary way. The states a run records, and when an
effect becomes visible, are the same as without early starts.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path

from batchpilot.artifacts.live import LiveOutput
from batchpilot.engine.handles import AttemptHandle, AttemptOutcome, StopReason
from batchpilot.engine.workers import DaemonThreadPool
from batchpilot.errors import SpecError
from batchpilot.spec.model import PipelineSpec, TriggerRule
from batchpilot.states import TaskState
from batchpilot.steps.registry import StepRegistry


class EarlyStarts:
    """The early attempts of one run, by task id."""

    def __init__(
        self,
        spec: PipelineSpec,
        registry: StepRegistry,
        *,
        grouped: Mapping[str, object],
        log_dir: Path,
        grace_s: float,
    ) -> None:
        self._nodes = {n.id: n for n in spec.nodes}
        self._children = spec.downstream()
        self._registry = registry
        self._grouped = grouped
        self._log_dir = log_dir
        self._grace_s = grace_s
        self._attempts: dict[str, tuple[Future[AttemptOutcome], AttemptHandle]] = {}
        #: the outputs early attempts follow, by the task that writes them
        self._followed: dict[str, LiveOutput] = {}
        self._serial = 0

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._attempts

    def __len__(self) -> int:
        return len(self._attempts)

    def candidates(self, parent: str, states: Mapping[str, TaskState], room: int) -> list[str]:
        """Children of ``parent`` (starting now) that may start early, at most ``room``."""
        found: list[str] = []
        for child in self._children[parent]:
            if len(found) >= room:
                break
            node = self._nodes[child]
            if (
                states[child] is TaskState.PENDING
                and child not in self._attempts
                and list(node.upstream) == [parent]
                and node.trigger_rule is TriggerRule.ALL_SUCCESS
                and child not in self._grouped
                and self._starts_early(node.type)
            ):
                found.append(child)
        return found

    def plan(
        self,
        starting: list[str],
        states: Mapping[str, TaskState],
        room: int,
    ) -> list[tuple[str, LiveOutput]]:
        """Children of the tasks ``starting`` now that may start early, on ``room`` free
        workers, each with the output it will follow; the attempts of ``starting`` write
        that output (:meth:`followed_output`; call before they are submitted)."""
        plan: list[tuple[str, LiveOutput]] = []
        for parent in starting:
            children = self.candidates(parent, states, room) if room > 0 else []
            if not children:
                self._followed.pop(parent, None)
                continue
            live = self._followed[parent] = LiveOutput(parent)
            plan += [(child, live) for child in children]
            room -= len(children)
        return plan

    def followed_output(self, task_id: str) -> LiveOutput | None:
        """The output early attempts follow that ``task_id``'s starting attempt writes."""
        return self._followed.get(task_id)

    def take_followed_output(self, task_id: str) -> LiveOutput | None:
        """Forget and return the followed output of ``task_id``, whose attempt ended:
        the engine then finishes or abandons it."""
        return self._followed.pop(task_id, None)

    def start(
        self,
        pool: DaemonThreadPool,
        task_id: str,
        attempt: int,
        run_attempt: Callable[[AttemptHandle], AttemptOutcome],
    ) -> None:
        """Submit an early attempt of ``task_id``, numbered ``attempt`` (not recorded)."""

        self._serial += 1
        handle = AttemptHandle(
            task_id=task_id,
            attempt=attempt,
            log_path=self._log_dir / f"{task_id}.attempt-{attempt}.early-{self._serial}.log",
            timeout_s=self._nodes[task_id].timeout_s,
            go=threading.Event(),
        )
        self._attempts[task_id] = (pool.submit(run_attempt, handle), handle)

    def take_ready(
        self, ready: list[tuple[int, str]]
    ) -> list[tuple[Future[AttemptOutcome], AttemptHandle]]:
        """Take out of the ``ready`` heap the tasks with an early attempt, to begin them.
        An early attempt that already ended by itself is discarded: its task stays in
        ``ready`` and starts the ordinary way."""
        taken: list[tuple[Future[AttemptOutcome], AttemptHandle]] = []
        for _, task_id in [entry for entry in ready if entry[1] in self._attempts]:
            future, handle = self._attempts.pop(task_id)
            if future.done():
                _delete_log_when_done(future, handle)
                continue
            taken.append((future, handle))
        if taken:
            began = {handle.task_id for _, handle in taken}
            ready[:] = [entry for entry in ready if entry[1] not in began]
            heapq.heapify(ready)
        return taken

    def abort(self, task_id: str) -> None:
        """Stop the early attempt of ``task_id`` (if any) and forget it."""
        entry = self._attempts.pop(task_id, None)
        if entry is not None:
            future, handle = entry
            handle.stop(StopReason.CANCEL, grace_s=self._grace_s)
            _delete_log_when_done(future, handle)

    def abort_children(self, task_id: str) -> None:
        """``task_id`` will not succeed (now): stop the early attempts that follow it."""
        for child in self._children[task_id]:
            self.abort(child)

    def abort_all(self) -> None:
        """Stop every early attempt (the run stops)."""
        for task_id in list(self._attempts):
            self.abort(task_id)

    def _starts_early(self, type_name: str) -> bool:
        try:
            return bool(self._registry.get(type_name).starts_early)
        except SpecError:
            return False


def _delete_log_when_done(future: Future[AttemptOutcome], handle: AttemptHandle) -> None:
    path = handle.log_path
    future.add_done_callback(lambda _: path.unlink(missing_ok=True))
