"""What ``GET /api/v1/events`` tells: run and task state changes, seen by polling the store.

One :class:`EventFeed` per app holds what the streams saw last: each
:class:`EventSource` it polls compares the store with that and returns the changes
as frames, which every open stream receives. :class:`RunChanges` watches the runs
(new, changed status) and the tasks of runs that are active or just changed. Other
packages add their own sources (the monitor's alerts) through
``create_app(event_sources=…)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from batchpilot.api.sse import sse_frame
from batchpilot.states import RunStatus
from batchpilot.store import RunRecord, RunStore

#: how many of the newest runs each poll compares
RECENT_RUNS = 200


class EventSource(Protocol):
    """Something that changes in the store, turned into events."""

    def changes(self) -> list[str]:
        """The frames for what changed since the last call (nothing on the first call)."""
        ...


class RunChanges:
    """Run events (``run``: a new run or a new status) and task events (``task``)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._runs: dict[str, str] | None = None
        self._tasks: dict[tuple[str, str], str] = {}

    def changes(self) -> list[str]:
        active = self.store.runs_in_status([RunStatus.QUEUED, RunStatus.RUNNING])
        recent = self.store.list_runs(limit=RECENT_RUNS)
        runs: dict[str, RunRecord] = {r.run_id: r for r in (*recent, *active)}
        first = self._runs is None
        seen = self._runs or {}
        frames: list[str] = []
        run_frames: list[str] = []  # after the task frames: tasks end before their run
        watch: list[RunRecord] = []
        for run in runs.values():
            if seen.get(run.run_id) != run.status.value:
                watch.append(run)
                if not first:
                    run_frames.append(sse_frame("run", _run_event(run)))
            elif not run.status.is_terminal():
                watch.append(run)
        self._runs = {r: run.status.value for r, run in runs.items()}
        for run in watch:
            for task in self.store.get_tasks(run.run_id):
                key = (run.run_id, task.task_id)
                if self._tasks.get(key) != task.state.value:
                    changed = key in self._tasks or run.run_id not in seen
                    if changed and not first:
                        frames.append(
                            sse_frame(
                                "task",
                                {
                                    "run_id": run.run_id,
                                    "pipeline": run.pipeline,
                                    "task_id": task.task_id,
                                    "state": task.state.value,
                                    "attempts": task.attempts,
                                },
                            )
                        )
                    self._tasks[key] = task.state.value
        self._tasks = {k: v for k, v in self._tasks.items() if k[0] in self._runs}
        return frames + run_frames


def _run_event(run: RunRecord) -> dict[str, object]:
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "error": run.error,
    }


class EventFeed:
    """Every source's changes, in order: one feed per app, shared by every open stream
    (:class:`~batchpilot.shared_poll.SharedPoll`)."""

    def __init__(self, sources: Sequence[EventSource]) -> None:
        self.sources = list(sources)

    def changes(self) -> list[str]:
        """The frames since the last call (nothing on the first)."""
        frames: list[str] = []
        for source in self.sources:
            frames.extend(source.changes())
        return frames


#: builds a fresh source for a new client, given the store
EventSourceFactory = Callable[[RunStore], EventSource]

__all__ = ["RECENT_RUNS", "EventFeed", "EventSource", "EventSourceFactory", "RunChanges"]
