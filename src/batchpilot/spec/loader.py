"""Parse pipeline files (YAML or JSON) and raw mappings into a :class:`PipelineSpec`.

Every error names the file, and where it can the line, node id and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.durations import parse_duration
from batchpilot.spec.graph import topological_order
from batchpilot.spec.model import (
    DEFAULT_MAX_RETRY_DELAY_S,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY_S,
    ActionSpec,
    CompensationMode,
    NodeSpec,
    PipelineSpec,
    RetryBackoff,
    RetryPolicy,
    TriggerRule,
)
from batchpilot.spec.schedule import parse_schedule

PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")
_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class _LineDict(dict):
    """A mapping that remembers the line it started on in its YAML file."""

    line: int | None = None


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _LineDict:
        mapping = _LineDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)


class _Policy(BaseModel):
    """Fields a node may set and ``default_args`` may default."""

    model_config = ConfigDict(extra="forbid")

    retries: int | None = Field(default=None, ge=0)
    retry_delay: float | None = None
    retry_backoff: RetryBackoff | None = None
    max_retry_delay: float | None = None
    retry_jitter: bool | None = None
    timeout: float | None = None
    trigger_rule: TriggerRule | None = None

    @field_validator("retry_delay", "max_retry_delay", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


class _DefaultArgs(_Policy):
    pass


class _RawAction(BaseModel):
    """A compensation or callback: a step definition, or ``"module:function"``."""

    model_config = ConfigDict(extra="forbid")

    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0)
    retry_delay: float = 1.0
    retry_backoff: RetryBackoff = RetryBackoff.EXPONENTIAL
    timeout: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str) or callable(value):
            return {"type": "python", "config": {"callable": value}}
        return value

    @field_validator("retry_delay", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    def to_spec(self) -> ActionSpec:
        return ActionSpec(
            type=self.type,
            config=dict(self.config),
            retry=RetryPolicy(
                retries=self.retries,
                retry_delay_s=self.retry_delay,
                backoff=self.retry_backoff,
            ),
            timeout_s=self.timeout,
        )


def _actions(value: Any) -> Any:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class _RawNode(_Policy):
    id: str
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    description: str | None = None
    compensate: _RawAction | None = None
    on_success: list[_RawAction] = Field(default_factory=list)
    on_failure: list[_RawAction] = Field(default_factory=list)
    on_retry: list[_RawAction] = Field(default_factory=list)
    transaction: str | None = None

    _one_or_many_actions = field_validator("on_success", "on_failure", "on_retry", mode="before")(
        classmethod(lambda cls, v: _actions(v))
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID_PATTERN.match(value):
            raise ValueError(
                f"invalid node id {value!r}: use letters, digits, '_' or '-', "
                "starting with a letter or '_'"
            )
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class _RawEdge(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    source: str
    target: str

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = dict(value)
            if "from" in value:
                value.setdefault("source", value.pop("from"))
            if "to" in value:
                value.setdefault("target", value.pop("to"))
        return value


class _RawPipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    schedule: Any = None  # checked by parse_schedule, which names each of its fields
    max_workers: int | None = Field(default=None, ge=1)
    default_args: _DefaultArgs = Field(default_factory=_DefaultArgs)
    params: dict[str, Any] = Field(default_factory=dict)
    nodes: list[_RawNode]
    edges: list[_RawEdge] = Field(default_factory=list)
    version: int | str | None = None
    kind: Literal["pipeline"] | None = None
    compensation: CompensationMode = CompensationMode.AUTO
    connections: dict[str, str] = Field(default_factory=dict)
    on_run_success: list[_RawAction] = Field(default_factory=list)
    on_run_failure: list[_RawAction] = Field(default_factory=list)

    _one_or_many_actions = field_validator("on_run_success", "on_run_failure", mode="before")(
        classmethod(lambda cls, v: _actions(v))
    )


def read_pipeline_document(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON pipeline file into a mapping.

    Raises :class:`SpecError` for a missing file, a syntax error (naming the
    file and line), or a document that is not a mapping.
    """
    document = parse_document(path)
    if not isinstance(document, dict):
        raise SpecError("a pipeline file must hold a mapping with 'name' and 'nodes'", path=path)
    return document


def parse_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file, whatever it holds; raises :class:`SpecError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file: {exc}", path=path) from None
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    else:
        try:
            document = yaml.load(text, Loader=_LineLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            line = mark.line + 1 if mark is not None else None
            raise SpecError(f"invalid YAML: {problem}", path=path, line=line) from None
    return document


def load_pipeline_file(path: str | Path) -> PipelineSpec:
    """Parse and check a pipeline file; raises :class:`SpecError` on any problem."""
    document = read_pipeline_document(path)
    return build_pipeline(document, source_path=str(path))


def build_pipeline(document: Mapping[str, Any], *, source_path: str | None = None) -> PipelineSpec:
    """Turn a raw mapping (a parsed file or a builder's JSON) into a checked spec.

    Raises :class:`SpecErrors` listing every problem found, each naming the
    file, node and field.
    """
    try:
        raw = _RawPipeline.model_validate(document)
    except ValidationError as exc:
        raise SpecErrors(_spec_errors_from_validation(exc, document, source_path)) from None
    return _resolve(raw, document, source_path)


def _node_line(document: Mapping[str, Any], index: int) -> int | None:
    nodes = document.get("nodes")
    if isinstance(nodes, list) and index < len(nodes):
        return getattr(nodes[index], "line", None)
    return None


def _spec_errors_from_validation(
    exc: ValidationError, document: Mapping[str, Any], path: str | None
) -> list[SpecError]:
    errors: list[SpecError] = []
    nodes = document.get("nodes") if isinstance(document.get("nodes"), list) else []
    for err in exc.errors():
        loc = list(err["loc"])
        message = _message(err)
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            index = loc[1]
            raw_node = nodes[index] if index < len(nodes) else {}
            node_id = raw_node.get("id") if isinstance(raw_node, Mapping) else None
            field = ".".join(str(p) for p in loc[2:]) or None
            errors.append(
                SpecError(
                    message,
                    path=path,
                    node_id=str(node_id) if node_id is not None else f"#{index + 1}",
                    field=field,
                    line=_node_line(document, index),
                )
            )
        else:
            field = _loc_text(loc)
            errors.append(SpecError(message, path=path, field=field or None))
    return errors


def _loc_text(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _policy(node: _Policy, defaults: _DefaultArgs) -> tuple[RetryPolicy, float | None, TriggerRule]:
    def pick(name: str, fallback: Any) -> Any:
        own = getattr(node, name)
        if own is not None:
            return own
        default = getattr(defaults, name)
        return fallback if default is None else default

    policy = RetryPolicy(
        retries=pick("retries", DEFAULT_RETRIES),
        retry_delay_s=pick("retry_delay", DEFAULT_RETRY_DELAY_S),
        backoff=pick("retry_backoff", RetryBackoff.FIXED),
        max_retry_delay_s=pick("max_retry_delay", DEFAULT_MAX_RETRY_DELAY_S),
        jitter=pick("retry_jitter", True),
    )
    return policy, pick("timeout", None), pick("trigger_rule", TriggerRule.ALL_SUCCESS)


def _resolve(raw: _RawPipeline, document: Mapping[str, Any], path: str | None) -> PipelineSpec:
    errors: list[SpecError] = []
    schedule = None
    if raw.schedule is not None:
        try:
            schedule = parse_schedule(
                raw.schedule, path=path, line=getattr(raw.schedule, "line", None)
            )
        except SpecErrors as exc:
            errors.extend(exc.errors)
    ids: dict[str, int] = {}
    for index, node in enumerate(raw.nodes):
        if node.id in ids:
            errors.append(
                SpecError(
                    f"duplicate node id (first declared as node #{ids[node.id] + 1})",
                    path=path,
                    node_id=node.id,
                    field="id",
                    line=_node_line(document, index),
                )
            )
        else:
            ids[node.id] = index

    upstream: dict[str, list[str]] = {node.id: [] for node in raw.nodes}
    for index, node in enumerate(raw.nodes):
        for parent in node.depends_on:
            if parent not in ids:
                errors.append(
                    SpecError(
                        f"depends on '{parent}', which is not a node of this pipeline",
                        path=path,
                        node_id=node.id,
                        field="depends_on",
                        line=_node_line(document, index),
                    )
                )
            elif parent not in upstream[node.id]:
                upstream[node.id].append(parent)
    for index, edge in enumerate(raw.edges):
        for end, value in (("source", edge.source), ("target", edge.target)):
            if value not in ids:
                errors.append(
                    SpecError(
                        f"edge {edge.source} -> {edge.target}: '{value}' is not a node "
                        "of this pipeline",
                        path=path,
                        field=f"edges[{index}].{end}",
                    )
                )
        if edge.source in ids and edge.target in ids:
            if edge.source == edge.target:
                errors.append(
                    SpecError(
                        f"edge {edge.source} -> {edge.target} links a node to itself",
                        path=path,
                        node_id=edge.source,
                        field=f"edges[{index}]",
                    )
                )
            elif edge.source not in upstream[edge.target]:
                upstream[edge.target].append(edge.source)
    if errors:
        raise SpecErrors(errors)

    try:
        order = topological_order(upstream)
    except SpecError as exc:
        raise SpecErrors([exc.with_path(path) if path else exc]) from None

    by_id = {node.id: node for node in raw.nodes}
    nodes = []
    for node_id in order:
        node = by_id[node_id]
        policy, timeout, rule = _policy(node, raw.default_args)
        nodes.append(
            NodeSpec(
                id=node.id,
                type=node.type,
                config=dict(node.config),
                upstream=tuple(upstream[node.id]),
                retry=policy,
                timeout_s=timeout,
                trigger_rule=rule,
                description=node.description,
                line=_node_line(document, ids[node.id]),
                compensate=node.compensate.to_spec() if node.compensate else None,
                on_success=tuple(a.to_spec() for a in node.on_success),
                on_failure=tuple(a.to_spec() for a in node.on_failure),
                on_retry=tuple(a.to_spec() for a in node.on_retry),
                transaction=node.transaction,
            )
        )
    return PipelineSpec(
        name=raw.name,
        nodes=tuple(nodes),
        params=dict(raw.params),
        description=raw.description,
        schedule=schedule,
        max_workers=raw.max_workers,
        source_path=path,
        compensation=raw.compensation,
        connections=dict(raw.connections),
        on_run_success=tuple(a.to_spec() for a in raw.on_run_success),
        on_run_failure=tuple(a.to_spec() for a in raw.on_run_failure),
    )
