"""Text rendering of runs for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchpilot.cli.progress import STATE_STYLE
from batchpilot.engine import RunResult
from batchpilot.states import RunStatus
from batchpilot.store.records import RunRecord

RUN_STYLE = {RunStatus.SUCCESS: "green", RunStatus.FAILED: "bold red", RunStatus.RUNNING: "cyan"}


def render_run(console: Console, result: RunResult) -> None:
    """Print a run's status and a table of its tasks."""
    style = RUN_STYLE.get(result.status, "")
    line = Text(f"run {result.run_id} of {result.pipeline}: ")
    line.append(result.status.value, style=style)
    if result.needs_attention:
        line.append("  (needs attention: a compensation failed)", style="bold red")
    console.print(line)
    if result.slot_delay_s is not None:
        console.print(f"  started {result.slot_delay_s:.1f}s after its scheduled slot")
    if result.error:
        console.print(f"  {result.error}", markup=False)
    table = Table("task", "state", "attempts", "rows in", "rows out", "rejected", "time")
    for task in result.tasks.values():
        table.add_row(
            task.task_id,
            Text(task.state.value, style=STATE_STYLE.get(task.state, "")),
            str(task.attempts),
            _n(task.rows_in),
            _n(task.rows_out),
            _n(task.rows_rejected),
            f"{task.duration_s:.2f}s" if task.duration_s is not None else "",
        )
    console.print(table)
    for task in result.tasks.values():
        if task.error:
            console.print(f"  {task.task_id}: {task.error}", markup=False)


def render_runs(console: Console, records: list[RunRecord]) -> None:
    """Print a table of runs, newest first."""
    if not records:
        console.print("no runs yet")
        return
    table = Table("run id", "pipeline", "status", "started", "ended", "note")
    for r in records:
        style = RUN_STYLE.get(r.status, "")
        table.add_row(
            r.run_id,
            r.pipeline,
            Text(r.status.value, style=style),
            f"{r.started_at:%Y-%m-%d %H:%M:%S}" if r.started_at else "",
            f"{r.ended_at:%Y-%m-%d %H:%M:%S}" if r.ended_at else "",
            ("needs attention " if r.needs_attention else "") + (r.error or ""),
        )
    console.print(table)


def _n(value: int | None) -> str:
    return f"{value:,}" if value is not None else ""
