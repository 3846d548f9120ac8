"""What the run page shows, gathered through the engine's services and the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from batchpilot.engine import AttemptLog, RunService
from batchpilot.errors import BatchpilotError
from batchpilot.spec.loader import build_pipeline
from batchpilot.store import RunRecord, TaskRecord
from batchpilot.ui.actions import RunAction, check_action
from batchpilot.ui.charts_svg import Span, render_gantt
from batchpilot.ui.graph_svg import GraphNode, render_graph

#: The most of one attempt's log a page shows (its end: where the error is).
MAX_LOG_CHARS = 64_000


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a task, with its log text (or why it is not shown)."""

    attempt: int
    state: str
    error: str | None
    text: str
    truncated: bool


@dataclass(frozen=True)
class TaskView:
    """One task of the run, its attempts newest last."""

    record: TaskRecord
    error_line: str | None
    attempts: list[AttemptView]


@dataclass(frozen=True)
class RunView:
    """Everything the run page draws."""

    run: RunRecord
    tasks: list[TaskView]
    graph_svg: str
    gantt_svg: str
    error_line: str | None
    actions: list[RunAction]


def first_line(text: str | None) -> str | None:
    """The first non-empty line of an error text."""
    if not text:
        return None
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


def run_view(service: RunService, run_id: str, now: datetime) -> RunView:
    """Gather the run page's content. Raises :class:`RunNotFound`."""
    result = service.show_run(run_id)
    run = service.store.get_run(result.run_id)
    tasks = service.store.get_tasks(run.run_id)
    logs = _logs_by_task(service, run)
    views = [TaskView(task, first_line(task.error), logs.get(task.task_id, [])) for task in tasks]
    states = {t.task_id: t.state.value for t in tasks}
    return RunView(
        run=run,
        tasks=views,
        graph_svg=render_graph(_graph_nodes(run, states), title=f"graph of {run.pipeline}"),
        gantt_svg=render_gantt(
            [Span(t.task_id, t.started_at, t.ended_at, t.state.value) for t in tasks], now
        ),
        error_line=first_line(run.error),
        actions=_allowed(service, run),
    )


def _graph_nodes(run: RunRecord, states: dict[str, str]) -> list[GraphNode]:
    try:
        spec = build_pipeline(run.spec, source_path=run.source_path)
    except BatchpilotError:  # a stored spec this version cannot read: boxes without edges
        return [GraphNode(t, (), s) for t, s in states.items()]
    return [GraphNode(n.id, n.upstream, states.get(n.id, "pending")) for n in spec.nodes]


def _allowed(service: RunService, run: RunRecord) -> list[RunAction]:
    allowed = []
    for action in (RunAction.CANCEL, RunAction.RETRY, RunAction.RESUME, RunAction.COMPENSATE):
        try:
            check_action(service, action, run.run_id)
        except BatchpilotError:
            continue
        allowed.append(action)
    return allowed


def _logs_by_task(service: RunService, run: RunRecord) -> dict[str, list[AttemptView]]:
    folder = (service.settings.runs_dir / run.run_id).resolve()
    found: dict[str, list[AttemptView]] = {}
    for log in service.read_logs(run.run_id):
        found.setdefault(log.task_id, []).append(_attempt_view(log, folder))
    return found


def _attempt_view(log: AttemptLog, folder: Path) -> AttemptView:
    if log.log_path and not _inside(Path(log.log_path), folder):
        text, truncated = f"(log not shown: {log.log_path} is outside the run's folder)", False
    else:
        text = log.text
        truncated = len(text) > MAX_LOG_CHARS
        if truncated:
            text = text[-MAX_LOG_CHARS:]
    return AttemptView(log.attempt, log.state, first_line(log.error), text, truncated)


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` (links resolved) lies under ``folder``."""
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False


__all__ = ["AttemptView", "RunView", "TaskView", "first_line", "run_view"]
