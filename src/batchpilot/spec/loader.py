"""Parse pipeline files (YAML or JSON) and raw mappings into a :class:`PipelineSpec`.

Every error names the file, and where it can the line, node id and field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from batchpilot.errors import SpecError, SpecErrors
from batchpilot.spec.documents import parse_document
from batchpilot.spec.durations import parse_duration
from batchpilot.spec.graph import topological_order
from batchpilot.spec.limits import (
    MAX_NODE_ID_LENGTH,
    MAX_PIPELINE_NAME_LENGTH,
    MAX_RETRIES,
    MAX_WORKERS,
    check_document_size,
)
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
from batchpilot.spec.monitoring import MonitoringSpec, parse_monitoring, parse_notify
from batchpilot.spec.params import ParamSpec, parse_param_specs
from batchpilot.spec.schedule import parse_schedule
from batchpilot.spec.triggers import TriggerSpec, parse_triggers
from batchpilot.spec.validation_errors import node_line, spec_errors_from_validation

__all__ = [
    "PIPELINE_SUFFIXES",
    "build_pipeline",
    "load_pipeline_file",
    "parse_document",
    "read_pipeline_document",
]

PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")
_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

#: A retry count: a whole number (not a boolean) from 0 to MAX_RETRIES.
Retries = Annotated[int, Strict(), Field(ge=0, le=MAX_RETRIES)]
#: Tasks run in parallel: a whole number (not a boolean) from 1 to MAX_WORKERS.
Workers = Annotated[int, Strict(), Field(ge=1, le=MAX_WORKERS)]


class _DurationFields(BaseModel):
    """Reads the duration fields of the models below that have them: ``retry_delay`` and
    ``max_retry_delay`` (see :func:`parse_duration`), ``timeout`` (a duration longer than 0)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("retry_delay", "max_retry_delay", mode="before", check_fields=False)
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("timeout", mode="before", check_fields=False)
    @classmethod
    def _timeout(cls, value: Any) -> float | None:
        return None if value is None else positive_timeout(value)


class _Policy(_DurationFields):
    """Fields a node may set and ``default_args`` may default."""

    retries: Retries | None = None
    retry_delay: float | None = None
    retry_backoff: RetryBackoff | None = None
    max_retry_delay: float | None = None
    retry_jitter: bool | None = None
    timeout: float | None = None
    trigger_rule: TriggerRule | None = None


def positive_timeout(value: Any) -> float:
    """A timeout in seconds: a duration (see :func:`parse_duration`) longer than 0."""
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError("a timeout must be longer than 0 s; leave it out for no timeout")
    return seconds


class _DefaultArgs(_Policy):
    pass


class _RawAction(_DurationFields):
    """A compensation or callback: a step definition, or ``"module:function"``."""

    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    retries: Retries = 0
    retry_delay: float = 1.0
    retry_backoff: RetryBackoff = RetryBackoff.EXPONENTIAL
    timeout: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str) or callable(value):
            return {"type": "python", "config": {"callable": value}}
        return value

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
    monitoring: Any = None  # checked by parse_monitoring

    _one_or_many_actions = field_validator("on_success", "on_failure", "on_retry", mode="before")(
        classmethod(lambda cls, v: _actions(v))
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID_PATTERN.match(value):
            raise ValueError(
                f"invalid node id {_shortened(value)}: use letters, digits, '_' or '-', "
                "starting with a letter or '_'"
            )
        if len(value) > MAX_NODE_ID_LENGTH:
            raise ValueError(
                f"a node id can be at most {MAX_NODE_ID_LENGTH} characters (it names the "
                f"task's files), this one has {len(value)}"
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
    triggers: Any = None  # checked by parse_triggers
    monitoring: Any = None  # checked by parse_monitoring
    notify: Any = None  # checked by parse_notify; channel names at the edge
    max_workers: Workers | None = None
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

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a pipeline name cannot be empty")
        if len(value) > MAX_PIPELINE_NAME_LENGTH:
            raise ValueError(
                f"a pipeline name can be at most {MAX_PIPELINE_NAME_LENGTH} characters (it "
                f"names DAG files), this one has {len(value)}"
            )
        if _CONTROL_CHARACTERS.search(value):
            raise ValueError("a pipeline name cannot hold control characters (a line break…)")
        return value

    @field_validator("nodes")
    @classmethod
    def _some_nodes(cls, value: list[_RawNode]) -> list[_RawNode]:
        if not value:
            raise ValueError("a pipeline needs at least one node")
        return value


def _required_params_of_a_schedule(
    raw: _RawPipeline, param_specs: Mapping[str, ParamSpec], path: str | None
) -> list[SpecError]:
    """A scheduled run supplies no parameters, so a scheduled pipeline needs every default."""
    if raw.schedule is None:
        return []
    return [
        SpecError(
            "a pipeline with a schedule cannot have a required parameter (scheduled runs "
            "supply none): give it a default",
            path=path,
            field=f"params.{name}",
        )
        for name, param in param_specs.items()
        if param.required
    ]


def _shortened(value: str, limit: int = 60) -> str:
    """``value`` quoted, cut after ``limit`` characters (with its length said)."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"… ({len(value)} characters)"


def read_pipeline_document(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON pipeline file into a mapping.

    Raises :class:`SpecError` for a missing file, a syntax error (naming the
    file and line), or a document that is not a mapping.
    """
    document = parse_document(path)
    if not isinstance(document, dict):
        raise SpecError("a pipeline file must hold a mapping with 'name' and 'nodes'", path=path)
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
    check_document_size(document, path=source_path)
    try:
        raw = _RawPipeline.model_validate(document)
    except ValidationError as exc:
        raise SpecErrors(spec_errors_from_validation(exc, document, source_path)) from None
    return _resolve(raw, document, source_path)


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
    triggers: tuple[TriggerSpec, ...] = ()
    try:
        triggers = parse_triggers(raw.triggers, path=path)
    except SpecErrors as exc:
        errors.extend(exc.errors)
    monitoring = MonitoringSpec()
    notify = None
    try:
        monitoring = parse_monitoring(
            raw.monitoring,
            path=path,
            nodes={node.id: node.monitoring for node in raw.nodes},
            has_schedule=schedule is not None,
        )
    except SpecErrors as exc:
        errors.extend(exc.errors)
    try:
        notify = parse_notify(raw.notify, path=path)
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
                    line=node_line(document, index),
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
                        line=node_line(document, index),
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
    param_specs: dict[str, ParamSpec] = {}
    try:
        param_specs = parse_param_specs(raw.params)
    except SpecErrors as exc:
        errors += [SpecError(e.reason, path=path, field=e.field) for e in exc.errors]
    errors += _required_params_of_a_schedule(raw, param_specs, path)
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
                line=node_line(document, ids[node.id]),
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
        params={name: p.default for name, p in param_specs.items() if p.has_default},
        param_specs=param_specs,
        description=raw.description,
        schedule=schedule,
        triggers=triggers,
        monitoring=monitoring,
        notify=notify,
        max_workers=raw.max_workers,
        source_path=path,
        compensation=raw.compensation,
        connections=dict(raw.connections),
        on_run_success=tuple(a.to_spec() for a in raw.on_run_success),
        on_run_failure=tuple(a.to_spec() for a in raw.on_run_failure),
    )
