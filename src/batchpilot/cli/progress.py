"""Live display of a running pipeline: each task's state, attempt, rows and duration."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batchpilot.engine import RunListener
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus, TaskState

STATE_STYLE = {
    TaskState.PENDING: "dim",
    TaskState.RUNNING: "bold cyan",
    TaskState.RETRY: "yellow",
    TaskState.SUCCESS: "green",
    TaskState.FAILED: "bold red",
    TaskState.SKIPPED: "dim yellow",
    TaskState.CANCELLED: "magenta",
    TaskState.COMPENSATING: "yellow",
    TaskState.COMPENSATED: "blue",
    TaskState.COMPENSATION_FAILED: "bold red",
}
MAX_LIVE_ROWS = 40


class _TaskView:
    __slots__ = ("attempt", "error", "rows", "started", "state", "took")

    def __init__(self, state: TaskState) -> None:
        self.state = state
        self.attempt = 0
        self.rows: int | None = None
        self.started: float | None = None
        self.took: float | None = None
        self.error: str | None = None


class LiveProgress(RunListener):
    """A rich table redrawn in place while the run goes on (for terminals)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._tasks: dict[str, _TaskView] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._title = ""

    def run_started(self, run_id: str, spec: PipelineSpec, states: dict[str, TaskState]) -> None:
        self._title = f"{spec.name} · run {run_id}"
        self._tasks = {t: _TaskView(s) for t, s in states.items()}
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=8,
            transient=False,
        )
        self._live.start()

    def task_state_changed(
        self, task_id: str, state: TaskState, *, attempt: int, error: str | None = None
    ) -> None:
        with self._lock:
            view = self._tasks[task_id]
            view.state = state
            view.attempt = attempt
            view.error = error
            if state is TaskState.RUNNING:
                view.started = time.monotonic()
                view.took = None
            elif view.started is not None:
                view.took = time.monotonic() - view.started

    def task_rows_reported(self, task_id: str, rows: int) -> None:
        with self._lock:
            self._tasks[task_id].rows = rows

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _render(self) -> Any:
        table = Table(title=self._title, title_justify="left", expand=False)
        for column in ("task", "state", "attempt", "rows", "time", "error"):
            table.add_column(
                column,
                justify="right" if column in {"attempt", "rows", "time"} else "left",
                overflow="fold",
            )
        with self._lock:
            items = list(self._tasks.items())
            counts: dict[str, int] = {}
            for _, v in items:
                counts[v.state.value] = counts.get(v.state.value, 0) + 1
            shown = items
            if len(items) > MAX_LIVE_ROWS:
                # Big graphs: show what is moving, not hundreds of pending rows.
                shown = [
                    i
                    for i in items
                    if i[1].state in (TaskState.RUNNING, TaskState.RETRY, TaskState.FAILED)
                ][:MAX_LIVE_ROWS]
            now = time.monotonic()
            for task_id, v in shown:
                took = (
                    v.took
                    if v.took is not None
                    else (
                        now - v.started
                        if v.started is not None and v.state is TaskState.RUNNING
                        else None
                    )
                )
                table.add_row(
                    task_id,
                    Text(v.state.value, style=STATE_STYLE.get(v.state, "")),
                    str(v.attempt or ""),
                    f"{v.rows:,}" if v.rows is not None else "",
                    f"{took:.1f}s" if took is not None else "",
                    (v.error or "")[:80],
                )
        table.caption = "  ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
        return table


class LineProgress(RunListener):
    """One line per task transition, for logs and pipes (no terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def run_started(self, run_id: str, spec: PipelineSpec, states: dict[str, TaskState]) -> None:
        self.console.print(f"run {run_id} of {spec.name}: {len(states)} tasks", highlight=False)

    def task_state_changed(
        self, task_id: str, state: TaskState, *, attempt: int, error: str | None = None
    ) -> None:
        suffix = f": {error}" if error else ""
        self.console.print(
            f"  {task_id} {state.value} (attempt {attempt}){suffix}", highlight=False, markup=False
        )

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        self.console.print(f"run {run_id} {status.value}", highlight=False)
