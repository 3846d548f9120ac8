"""The immutable pipeline model every other layer reads.

Files and Python objects are parsed into :class:`PipelineSpec`; nothing
downstream sees raw YAML. ``default_args`` are already merged into each node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchpilot.spec.params import ParamSpec

from batchpilot.spec.monitoring import MonitoringSpec
from batchpilot.spec.schedule import ScheduleSpec
from batchpilot.spec.triggers import TriggerSpec


class TriggerRule(StrEnum):
    """When a task runs, given its upstream tasks' states (as in Airflow)."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"


class RetryBackoff(StrEnum):
    """How the delay between attempts grows."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


DEFAULT_RETRIES = 0
DEFAULT_RETRY_DELAY_S = 10.0
DEFAULT_MAX_RETRY_DELAY_S = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a failed attempt is retried and how long to wait between."""

    retries: int = DEFAULT_RETRIES
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S
    backoff: RetryBackoff = RetryBackoff.FIXED
    max_retry_delay_s: float = DEFAULT_MAX_RETRY_DELAY_S
    jitter: bool = True


class CompensationMode(StrEnum):
    """Whether a failed run's compensations start by themselves or on command."""

    AUTO = "auto"
    MANUAL = "manual"


@dataclass(frozen=True)
class ActionSpec:
    """A step run outside the graph: a compensation or a callback.

    ``type``/``config`` name a step like a node's; a callback given as
    ``"module:function"`` (or a Python callable) becomes a ``python`` action.
    """

    type: str
    config: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float | None = None


@dataclass(frozen=True)
class NodeSpec:
    """One task of a pipeline: what to run, with which policy, after what."""

    id: str
    type: str
    config: dict[str, Any] = field(default_factory=dict)
    upstream: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    description: str | None = None
    line: int | None = None
    compensate: ActionSpec | None = None
    on_success: tuple[ActionSpec, ...] = ()
    on_failure: tuple[ActionSpec, ...] = ()
    on_retry: tuple[ActionSpec, ...] = ()
    transaction: str | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: nodes in a stable topological order, params' defaults
    (``params``; a parameter declared without a default is only in ``param_specs``)."""

    name: str
    nodes: tuple[NodeSpec, ...]
    params: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    schedule: ScheduleSpec | None = None
    max_workers: int | None = None
    source_path: str | None = None
    compensation: CompensationMode = CompensationMode.AUTO
    on_run_success: tuple[ActionSpec, ...] = ()
    on_run_failure: tuple[ActionSpec, ...] = ()
    #: default connections (name → URL) used when the environment defines none by that name
    connections: dict[str, str] = field(default_factory=dict)
    #: every parameter's declaration (``params`` holds the defaults); empty: inferred from
    #: ``params`` (see :func:`batchpilot.spec.params.param_specs_of`)
    param_specs: dict[str, ParamSpec] = field(default_factory=dict)
    #: file and ``after`` triggers run by ``serve`` (see :mod:`batchpilot.spec.triggers`)
    triggers: tuple[TriggerSpec, ...] = ()
    #: alert rules (see :mod:`batchpilot.spec.monitoring`); every rule on by default
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    #: alert routes, rule → channel names; None: no ``notify:`` in the file
    notify: dict[str, tuple[str, ...]] | None = None

    @property
    def folder(self) -> str | None:
        """The absolute folder of the pipeline file (``{{ pipeline_dir }}``), if any."""
        if self.source_path is None:
            return None
        from pathlib import Path

        return str(Path(self.source_path).resolve().parent)

    def node(self, node_id: str) -> NodeSpec:
        """Return the node with that id; raises ``KeyError`` if there is none."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Node ids in topological order."""
        return tuple(n.id for n in self.nodes)

    def downstream(self) -> dict[str, tuple[str, ...]]:
        """Map each node id to the ids of the nodes that depend on it directly."""
        children: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for node in self.nodes:
            for parent in node.upstream:
                children[parent].append(node.id)
        return {k: tuple(v) for k, v in children.items()}
