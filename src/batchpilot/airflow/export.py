"""Export a pipeline as a readable, black-formatted Airflow DAG file.

The file is deterministic: the same pipeline (and batchpilot version) always
gives the same bytes, so re-exporting an unchanged pipeline changes nothing
and a DAGs folder can be kept under version control.

What Airflow cannot express is refused with a :class:`SpecError` naming the
node and the feature, never dropped: ``transaction`` groups (one database
transaction across several tasks), ``compensation: manual`` (Airflow has no
"run the saga on command"), callables that workers cannot import by module
path (lambdas, functions defined inside the pipeline file), a timeout on a
callback, and config values that are not plain data.
"""

from __future__ import annotations

import keyword
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.airflow.layout import (
    OUTCOME_TASK_ID,
    compensation_task_id,
    compensation_upstream,
    dag_file_name,
    dag_id_for,
    needs_outcome_task,
)
from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.model import (
    ActionSpec,
    CompensationMode,
    NodeSpec,
    PipelineSpec,
    RetryBackoff,
    TriggerRule,
)
from batchpilot.spec.serialize import action_to_document
from batchpilot.steps.callables import callable_name

LINE_LENGTH = 100
#: Every exported DAG starts on this fixed date (a moving one would change the file).
START_DATE = "datetime(2024, 1, 1, tzinfo=timezone.utc)"
_CALLABLE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_UNIMPORTABLE_MODULES = frozenset({"__main__", "__batchpilot_pipeline__", "?", ""})
_RESERVED_NAMES = frozenset(
    {
        "DAG",
        "Param",
        "datetime",
        "timedelta",
        "timezone",
        "dag",
        "PIPELINE",
        "ARTIFACTS",
        "PIPELINE_TASKS",
        "ActionCallback",
        "BatchpilotOperator",
        "BatchpilotCompensationOperator",
        "BatchpilotOutcomeOperator",
        "annotations",
    }
)


@dataclass(frozen=True)
class ExportedDag:
    """One written DAG file."""

    pipeline: str
    dag_id: str
    path: Path
    changed: bool


# -- refusing what Airflow cannot express ---------------------------------------------------


def check_exportable(spec: PipelineSpec) -> None:
    """Raise :class:`SpecErrors` listing every feature of ``spec`` Airflow cannot express."""
    errors = list(_refusals(spec))
    if errors:
        raise SpecErrors(errors)


def _refusals(spec: PipelineSpec) -> Iterator[SpecError]:
    path = spec.source_path
    if spec.compensation is CompensationMode.MANUAL:
        yield SpecError(
            "'compensation: manual' cannot be exported to Airflow: Airflow has no way to hold "
            "compensations until someone starts them; use 'auto' or run this pipeline locally",
            path=path,
            field="compensation",
        )
    for node in spec.nodes:
        if node.transaction:
            yield SpecError(
                f"transaction group '{node.transaction}' cannot be exported to Airflow: each "
                "Airflow task commits on its own, so an atomic group across tasks cannot hold; "
                "merge the statements into one sql node or run this pipeline locally",
                path=path,
                node_id=node.id,
                field="transaction",
                line=node.line,
            )
        yield from _value_refusals(node.config, spec, node, "config")
        if node.compensate is not None:
            yield from _value_refusals(node.compensate.config, spec, node, "compensate.config")
        for hook in ("on_success", "on_failure", "on_retry"):
            for index, action in enumerate(getattr(node, hook)):
                yield from _action_refusals(action, spec, node, f"{hook}[{index}]")
    for hook in ("on_run_success", "on_run_failure"):
        for index, action in enumerate(getattr(spec, hook)):
            yield from _action_refusals(action, spec, None, f"{hook}[{index}]")


def _action_refusals(
    action: ActionSpec, spec: PipelineSpec, node: NodeSpec | None, field: str
) -> Iterator[SpecError]:
    if action.timeout_s is not None:
        yield SpecError(
            "a timeout on a callback cannot be exported: Airflow runs callbacks without one; "
            "remove the timeout or make the callback a task",
            path=spec.source_path,
            node_id=node.id if node else None,
            field=f"{field}.timeout",
            line=node.line if node else None,
        )
    yield from _value_refusals(action.config, spec, node, f"{field}.config")


def _value_refusals(
    value: Any, spec: PipelineSpec, node: NodeSpec | None, field: str
) -> Iterator[SpecError]:
    def refuse(message: str, where: str) -> SpecError:
        return SpecError(
            message,
            path=spec.source_path,
            node_id=node.id if node else None,
            field=where,
            line=node.line if node else None,
        )

    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                yield refuse(f"config key {key!r} is not a string", field)
                continue
            yield from _value_refusals(item, spec, node, f"{field}.{key}")
            if key == "callable" and isinstance(item, str) and not _CALLABLE_REF.match(item):
                yield refuse(
                    f"{item!r} is not an importable 'module:function' reference, which is "
                    "how Airflow workers find the function",
                    f"{field}.{key}",
                )
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _value_refusals(item, spec, node, f"{field}[{index}]")
    elif value is None or isinstance(value, str | int | float | bool):
        return
    elif callable(value):
        name = callable_name(value)
        module, _, qualname = name.partition(":")
        if module in _UNIMPORTABLE_MODULES or "<" in qualname:
            where = (
                "defined in the pipeline file itself"
                if module in {"__batchpilot_pipeline__", "__main__"}
                else "not importable by module path"
            )
            yield refuse(
                f"the Python callable {name} is {where}, so Airflow workers cannot import it; "
                "define it as a top-level function in a module the workers can import",
                field,
            )
    else:
        yield refuse(
            f"a {type(value).__name__} value cannot be written into a DAG file; "
            "use plain data (strings, numbers, lists, mappings)",
            field,
        )


# -- writing the DAG ------------------------------------------------------------------------


def render_dag(
    spec: PipelineSpec, *, source: str | None = None, artifacts: str | None = None
) -> str:
    """Return the DAG file's text, black-formatted.

    ``source`` names the pipeline file in the header; ``artifacts`` is the
    shared folder for datasets (None: the worker's
    ``$BATCHPILOT_AIRFLOW_ARTIFACTS``). Raises :class:`SpecErrors` if the
    pipeline uses a feature Airflow cannot express.
    """
    check_exportable(spec)
    from batchpilot import __version__

    names = _variable_names(spec)
    dag_id = dag_id_for(spec.name)
    with_outcome = needs_outcome_task(spec)
    compensated = [n for n in spec.nodes if n.compensate is not None]
    uses_callbacks = bool(spec.on_run_success or spec.on_run_failure) or any(
        n.on_success or n.on_failure or n.on_retry for n in spec.nodes
    )

    imports = ["BatchpilotOperator"]
    if compensated:
        imports.append("BatchpilotCompensationOperator")
    if with_outcome:
        imports.append("BatchpilotOutcomeOperator")
    lines = [
        f"# Airflow DAG of the batchpilot pipeline {spec.name!r}.",
        f"# Generated by batchpilot {__version__} from {source or '<Python objects>'}.",
        "# Do not edit: change the pipeline and run `batchpilot export airflow` again.",
        '"""' + _docstring(spec) + '"""',
        "",
        "from __future__ import annotations",
        "",
        "from datetime import datetime, timedelta, timezone",
        "",
        f"from airflow.sdk import {_sdk_imports(spec)}",
        "",
        f"from batchpilot.airflow import {', '.join(sorted(imports))}",
    ]
    if uses_callbacks:
        lines.append("from batchpilot.airflow.callbacks import ActionCallback")
    lines += [
        "",
        "# The pipeline's name, folder ({{ pipeline_dir }}) and default connections.",
        f"PIPELINE = {_literal(_pipeline_info(spec))}",
        "# Shared folder for datasets between tasks; None: $BATCHPILOT_AIRFLOW_ARTIFACTS on the",
        "# worker, else $AIRFLOW_HOME/batchpilot-artifacts.",
        f"ARTIFACTS = {artifacts!r}",
        "",
        "with DAG(",
        f"    dag_id={dag_id!r},",
    ]
    if spec.description:
        lines.append(f"    description={spec.description!r},")
    lines += [
        f"    schedule={_schedule_argument(spec)},",
        f"    start_date={START_DATE},",
        "    catchup=False,",
    ]
    if spec.max_workers is not None:
        lines.append(f"    max_active_tasks={spec.max_workers!r},")
    if spec.params:
        params = ", ".join(f"{k!r}: Param({_literal(v)})" for k, v in spec.params.items())
        lines.append(f"    params={{{params}}},")
    for hook, arg in (
        ("on_run_success", "on_success_callback"),
        ("on_run_failure", "on_failure_callback"),
    ):
        actions = getattr(spec, hook)
        if actions:
            lines.append(f"    {arg}={_callback(hook, actions, None)},")
    lines += ['    tags=["batchpilot"],', ") as dag:"]

    for node in spec.nodes:
        lines.append(f"    {names[node.id]} = BatchpilotOperator(")
        lines += [f"        {arg}," for arg in _node_arguments(node)]
        lines.append("    )")
    edges = [node for node in spec.nodes if node.upstream]
    if edges:
        lines.append("")
    for node in edges:
        upstream = [names[p] for p in node.upstream]
        left = upstream[0] if len(upstream) == 1 else f"[{', '.join(upstream)}]"
        lines.append(f"    {left} >> {names[node.id]}")

    if compensated or with_outcome:
        lines += ["", f"    PIPELINE_TASKS = [{', '.join(names[n] for n in spec.node_ids)}]"]
    if compensated:
        lines += [
            "",
            "    # Saga: when a pipeline task failed, undo each task that succeeded, in reverse",
            "    # dependency order. Each compensation waits for every pipeline task (all_done)",
            "    # and skips itself unless the run failed and its task had succeeded.",
        ]
    for node in reversed(compensated):  # the saga's order: the latest task is undone first
        assert node.compensate is not None
        var = names[compensation_task_id(node.id)]
        lines.append(f"    {var} = BatchpilotCompensationOperator(")
        lines += [f"        {arg}," for arg in _compensation_arguments(node, node.compensate)]
        lines.append("    )")
        later = [names[t] for t in compensation_upstream(spec, node.id)[len(spec.nodes) :]]
        upstream = "PIPELINE_TASKS" if not later else f"[*PIPELINE_TASKS, {', '.join(later)}]"
        lines.append(f"    {upstream} >> {var}")
    if with_outcome:
        after = [names[compensation_task_id(n.id)] for n in compensated]
        upstream = "PIPELINE_TASKS" if not after else f"[*PIPELINE_TASKS, {', '.join(after)}]"
        lines += [
            "",
            "    # Fails the DAG run when any pipeline task failed, as a local run would.",
            "    outcome = BatchpilotOutcomeOperator(",
            f"        task_id={OUTCOME_TASK_ID!r},",
            '        trigger_rule="all_done",',
            "        pipeline_tasks=[task.task_id for task in PIPELINE_TASKS],",
            "    )",
            f"    {upstream} >> outcome",
        ]
    return _black("\n".join(lines) + "\n")


def _sdk_imports(spec: PipelineSpec) -> str:
    zoned = spec.schedule is not None and spec.schedule.timezone != "UTC"
    return "CronTriggerTimetable, DAG, Param" if zoned else "DAG, Param"


def _schedule_argument(spec: PipelineSpec) -> str:
    """Airflow's ``schedule``: the checked 5-field cron (a preset written out), read in the
    schedule's time zone through a ``CronTriggerTimetable`` unless that zone is UTC."""
    schedule = spec.schedule
    if schedule is None:
        return "None"
    if schedule.timezone == "UTC":
        return repr(schedule.cron)
    return f"CronTriggerTimetable({schedule.cron!r}, timezone={schedule.timezone!r})"


def _pipeline_info(spec: PipelineSpec) -> dict[str, Any]:
    info: dict[str, Any] = {"name": spec.name, "folder": spec.folder}
    if spec.connections:
        info["connections"] = dict(spec.connections)
    return info


def _docstring(spec: PipelineSpec) -> str:
    text = spec.description or f"The batchpilot pipeline {spec.name}."
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()


def _node_arguments(node: NodeSpec) -> list[str]:
    args = [
        f"task_id={node.id!r}",
        "pipeline=PIPELINE",
        f"step_type={node.type!r}",
        f"config={_literal(_plain(node.config))}",
        "artifacts=ARTIFACTS",
    ]
    args += _retry_arguments(
        node.retry.retries,
        node.retry.retry_delay_s,
        node.retry.backoff,
        node.retry.max_retry_delay_s,
    )
    if node.timeout_s is not None:
        args.append(f"execution_timeout={_timedelta(node.timeout_s)}")
    if node.trigger_rule is not TriggerRule.ALL_SUCCESS:
        args.append(f"trigger_rule={node.trigger_rule.value!r}")
    if node.description:
        args.append(f"doc_md={node.description!r}")
    for hook, arg in (
        ("on_success", "on_success_callback"),
        ("on_failure", "on_failure_callback"),
        ("on_retry", "on_retry_callback"),
    ):
        actions = getattr(node, hook)
        if actions:
            args.append(f"{arg}={_callback(hook, actions, node.id)}")
    return args


def _compensation_arguments(node: NodeSpec, action: ActionSpec) -> list[str]:
    document = action_to_document(action)
    kept = {k: document[k] for k in ("type", "config")}
    args = [
        f"task_id={compensation_task_id(node.id)!r}",
        "pipeline=PIPELINE",
        f"target={node.id!r}",
        f"action={_literal(_plain(kept))}",
        "pipeline_tasks=[task.task_id for task in PIPELINE_TASKS]",
        "artifacts=ARTIFACTS",
        'trigger_rule="all_done"',
    ]
    args += _retry_arguments(
        action.retry.retries, action.retry.retry_delay_s, action.retry.backoff, None
    )
    if action.timeout_s is not None:
        args.append(f"execution_timeout={_timedelta(action.timeout_s)}")
    return args


def _retry_arguments(
    retries: int, delay_s: float, backoff: RetryBackoff, max_delay_s: float | None
) -> list[str]:
    args = [f"retries={retries}"]
    if retries:
        args.append(f"retry_delay={_timedelta(delay_s)}")
        if backoff is RetryBackoff.EXPONENTIAL:
            args.append("retry_exponential_backoff=2.0")
            if max_delay_s is not None:
                args.append(f"max_retry_delay={_timedelta(max_delay_s)}")
    return args


def _callback(hook: str, actions: Sequence[ActionSpec], node_id: str | None) -> str:
    documents = []
    for action in actions:
        document = action_to_document(action)
        documents.append(
            {k: document[k] for k in ("type", "config", "retries", "retry_delay", "retry_backoff")}
        )
    node = f", node_id={node_id!r}" if node_id else ""
    return (
        f"ActionCallback(pipeline=PIPELINE, event={hook!r}{node}, "
        f"actions={_literal(_plain(documents))}, artifacts=ARTIFACTS)"
    )


def _timedelta(seconds: float) -> str:
    value = int(seconds) if float(seconds).is_integer() else seconds
    return f"timedelta(seconds={value!r})"


def _plain(value: Any) -> Any:
    """Plain data with callables as ``module:qualname`` (already checked to be importable)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value) and not isinstance(value, str):
        return callable_name(value)
    return value


def _literal(value: Any) -> str:
    """A Python literal for plain data (``repr`` of dicts, lists, str, numbers, bools, None)."""
    return repr(value)


def _variable_names(spec: PipelineSpec) -> dict[str, str]:
    """A readable, unique Python name for each task (node ids may contain '-')."""
    taken: set[str] = set(_RESERVED_NAMES) | {"outcome"}
    names: dict[str, str] = {}

    def pick(task_id: str, base: str) -> None:
        name = re.sub(r"\W", "_", base)
        if not name.isidentifier() or keyword.iskeyword(name):
            name = f"task_{name}"
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}_{n}", n + 1
        taken.add(candidate)
        names[task_id] = candidate

    for node in spec.nodes:
        pick(node.id, node.id)
    for node in spec.nodes:
        if node.compensate is not None:
            pick(compensation_task_id(node.id), f"compensate_{node.id}")
    return names


def _black(source: str) -> str:
    import black

    return black.format_str(source, mode=black.Mode(line_length=LINE_LENGTH))


def source_label(path: str | Path | None) -> str | None:
    """How the header names the pipeline file: relative to the working folder when inside it."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def write_dag_file(folder: Path, file_name: str, text: str) -> tuple[Path, bool]:
    """Write ``text`` as ``folder/file_name`` atomically; returns (path, changed).

    An identical existing file is left untouched (so Airflow does not re-parse
    it); otherwise the text goes to a hidden temporary file Airflow ignores and
    is renamed into place, so Airflow never reads half a file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file_name
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return target, False
    partial = folder / f".{file_name}.{os.getpid()}.partial"
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target, True


def export_pipeline(
    spec: PipelineSpec, folder: Path, *, source: str | None = None, artifacts: str | None = None
) -> ExportedDag:
    """Render ``spec`` and write it into ``folder`` as ``<dag_id>.py``.

    Raises :class:`SpecErrors` (and writes nothing) if Airflow cannot express it.
    """
    text = render_dag(spec, source=source, artifacts=artifacts)
    path, changed = write_dag_file(folder, dag_file_name(spec.name), text)
    return ExportedDag(pipeline=spec.name, dag_id=dag_id_for(spec.name), path=path, changed=changed)
