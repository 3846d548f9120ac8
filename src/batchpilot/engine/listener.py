"""Hooks the engine calls as a run progresses (the CLI's live display is one)."""

from __future__ import annotations

from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, TaskState


class RunListener:
    """Receives run events on the engine's thread; every hook does nothing by default."""

    def run_started(self, run_id: str, spec: PipelineSpec, states: dict[str, TaskState]) -> None:
        """The run (or its resumption) begins with tasks in ``states``."""

    def task_state_changed(
        self, task_id: str, state: TaskState, *, attempt: int, error: str | None = None
    ) -> None:
        """A task entered ``state``."""

    def task_rows_reported(self, task_id: str, rows: int) -> None:
        """A running step reported how many rows it handled so far (from its thread)."""

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """The run ended (or was interrupted) with ``status``."""


class ListenerChain(RunListener):
    """Tells several listeners each event, in order (the display, then the run-end monitor)."""

    def __init__(self, *listeners: RunListener) -> None:
        self.listeners = listeners

    def run_started(self, run_id: str, spec: PipelineSpec, states: dict[str, TaskState]) -> None:
        """Tell each listener."""
        for listener in self.listeners:
            listener.run_started(run_id, spec, states)

    def task_state_changed(
        self, task_id: str, state: TaskState, *, attempt: int, error: str | None = None
    ) -> None:
        """Tell each listener."""
        for listener in self.listeners:
            listener.task_state_changed(task_id, state, attempt=attempt, error=error)

    def task_rows_reported(self, task_id: str, rows: int) -> None:
        """Tell each listener."""
        for listener in self.listeners:
            listener.task_rows_reported(task_id, rows)

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        """Tell each listener."""
        for listener in self.listeners:
            listener.run_finished(run_id, status)
