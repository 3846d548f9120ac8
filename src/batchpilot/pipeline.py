"""The Python way to define and run pipelines: ``Pipeline``, ``Task``, ``depends_on``."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from batchpilot.engine.results import RunResult
from batchpilot.engine.runs import resume_run, start_run
from batchpilot.errors import SpecError
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline, load_pipeline_file
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore

_POLICY_FIELDS = (
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "trigger_rule",
)


class Task:
    """One node of a Python-defined pipeline.

    ``Task("t", run=fn)`` calls ``fn``; ``Task("t", type="load.postgres",
    config={...})`` runs a built-in step; ``Task("t")`` does nothing.
    """

    def __init__(
        self,
        name: str,
        run: Callable[..., Any] | str | None = None,
        *,
        type: str | None = None,
        config: Mapping[str, Any] | None = None,
        depends_on: Iterable[Task | str] | Task | str | None = None,
        description: str | None = None,
        compensate: Callable[..., Any] | Task | str | None = None,
        on_success: Any = None,
        on_failure: Any = None,
        on_retry: Any = None,
        transaction: str | None = None,
        **policy: Any,
    ) -> None:
        unknown = set(policy) - set(_POLICY_FIELDS)
        if unknown:
            raise SpecError(f"unknown Task argument(s): {', '.join(sorted(unknown))}", node_id=name)
        if run is not None and type not in (None, "python"):
            raise SpecError("give either run= or type=, not both", node_id=name, field="run")
        self.name = name
        self.config = dict(config or {})
        if run is not None:
            self.type = "python"
            self.config["callable"] = run
        else:
            self.type = type or "empty"
        self.description = description
        self.policy = {k: v for k, v in policy.items() if v is not None}
        self.compensate = compensate
        self.hooks = {"on_success": on_success, "on_failure": on_failure, "on_retry": on_retry}
        self.transaction = transaction
        self._upstream: list[str] = []
        if depends_on is not None:
            self.depends_on(depends_on)

    def depends_on(self, *tasks: Task | str | Iterable[Task | str]) -> Task:
        """Run this task after ``tasks``; returns the task itself for chaining."""
        for item in tasks:
            items = item if isinstance(item, list | tuple | set) else [item]
            for task in items:
                name = task.name if isinstance(task, Task) else str(task)
                if name not in self._upstream:
                    self._upstream.append(name)
        return self

    def __rshift__(self, other: Task | list[Task]) -> Task | list[Task]:
        """``a >> b`` makes ``b`` depend on ``a``."""
        for task in other if isinstance(other, list) else [other]:
            task.depends_on(self)
        return other

    def to_node(self) -> dict[str, Any]:
        """The node as it would be written in a pipeline file."""
        node: dict[str, Any] = {"id": self.name, "type": self.type, "config": self.config}
        if self._upstream:
            node["depends_on"] = list(self._upstream)
        if self.description:
            node["description"] = self.description
        if self.compensate is not None:
            node["compensate"] = action_document(self.compensate)
        for hook, value in self.hooks.items():
            if value is not None:
                node[hook] = [action_document(v) for v in _many(value)]
        if self.transaction:
            node["transaction"] = self.transaction
        node.update(self.policy)
        return node

    def __repr__(self) -> str:
        return f"Task({self.name!r}, type={self.type!r})"


def action_document(action: Callable[..., Any] | Task | str | Mapping[str, Any]) -> Any:
    """A compensation or callback in file form: a Task becomes its step, a callable
    or ``"module:function"`` a ``python`` step."""
    if isinstance(action, Task):
        return {
            "type": action.type,
            "config": action.config,
            **{
                k: v
                for k, v in action.policy.items()
                if k in ("retries", "retry_delay", "retry_backoff", "timeout")
            },
        }
    if isinstance(action, Mapping):
        return dict(action)
    return {"type": "python", "config": {"callable": action}}


def _many(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


class Pipeline:
    """A graph of :class:`Task` objects that runs on the embedded engine."""

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        default_args: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        description: str | None = None,
        schedule: str | Mapping[str, Any] | None = None,
        compensation: str = "auto",
        on_run_success: Any = None,
        on_run_failure: Any = None,
    ) -> None:
        self.name = name
        self.compensation = compensation
        self.on_run_success = on_run_success
        self.on_run_failure = on_run_failure
        self.params = dict(params or {})
        self.default_args = dict(default_args or {})
        self.max_workers = max_workers
        self.description = description
        self.schedule = schedule
        self.tasks: dict[str, Task] = {}
        self.source_path: str | None = None

    def add_task(self, task: Task) -> Task:
        """Add one task; raises :class:`SpecError` on a duplicate name."""
        if task.name in self.tasks and self.tasks[task.name] is not task:
            raise SpecError("duplicate task name", node_id=task.name, field="id")
        self.tasks[task.name] = task
        return task

    def add_tasks(self, tasks: Iterable[Task]) -> None:
        """Add several tasks."""
        for task in tasks:
            self.add_task(task)

    def to_spec(self) -> PipelineSpec:
        """Check the graph and return the immutable spec; raises :class:`SpecErrors`."""
        document: dict[str, Any] = {
            "name": self.name,
            "params": self.params,
            "default_args": self.default_args,
            "nodes": [t.to_node() for t in self.tasks.values()],
        }
        for key in ("max_workers", "description", "schedule"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        document["compensation"] = self.compensation
        for hook in ("on_run_success", "on_run_failure"):
            value = getattr(self, hook)
            if value is not None:
                document[hook] = [action_document(v) for v in _many(value)]
        return build_pipeline(document, source_path=self.source_path)

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        workers: int | None = None,
        ds: str | None = None,
        settings: Settings | None = None,
    ) -> RunResult:
        """Run the pipeline to the end on this machine and return its result.

        Settings come from ``BATCHPILOT_*`` variables unless given. Raises
        :class:`SpecErrors` before creating a run if the pipeline is invalid.
        """
        settings = settings or Settings.from_env()
        store = RunStore.for_home(settings.home, settings.database_url)
        try:
            return start_run(
                self.to_spec(),
                settings=settings,
                store=store,
                params=params,
                ds=ds,
                workers=workers,
            )
        finally:
            store.dispose()

    def resume(self, run_id: str, *, settings: Settings | None = None) -> RunResult:
        """Continue a failed or interrupted run of this pipeline."""
        settings = settings or Settings.from_env()
        store = RunStore.for_home(settings.home, settings.database_url)
        try:
            return resume_run(run_id, settings=settings, store=store, spec=self.to_spec())
        finally:
            store.dispose()


def load_python_pipeline(path: str | Path) -> PipelineSpec:
    """Import a ``.py`` file and return the spec of the :class:`Pipeline` it defines.

    The file must define exactly one Pipeline (or one named ``pipeline``).
    Raises :class:`SpecError` naming the file otherwise.
    """
    path = Path(path)
    try:
        namespace = runpy.run_path(str(path), run_name="__batchpilot_pipeline__")
    except SpecError as exc:
        raise exc.with_path(path) from None
    except Exception as exc:
        raise SpecError(f"cannot import: {type(exc).__name__}: {exc}", path=path) from None
    found = [v for v in namespace.values() if isinstance(v, Pipeline)]
    if isinstance(namespace.get("pipeline"), Pipeline):
        found = [namespace["pipeline"]]
    if len(found) != 1:
        raise SpecError(
            f"expected one batchpilot Pipeline in the file, found {len(found)}", path=path
        )
    pipeline = found[0]
    pipeline.source_path = str(path)
    try:
        return pipeline.to_spec()
    except SpecError as exc:
        raise exc.with_path(path) from None


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Read a pipeline file: ``.yaml``, ``.yml``, ``.json``, or a ``.py`` defining a Pipeline.

    The file's folder goes on ``sys.path`` so ``callable: module:function``
    finds modules kept next to the pipeline. Raises :class:`SpecError`.
    """
    path = Path(path)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if path.suffix == ".py":
        return load_python_pipeline(path)
    return load_pipeline_file(path)
