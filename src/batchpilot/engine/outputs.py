"""What a task produced, typed: :class:`TaskOutput`, and its two encodings.

This module is the only place a task's output is encoded and decoded: to and
from the state store's JSON (``{"artifact", "side_outputs", "metadata"}``;
rows live in the task's own columns), and to and from an Airflow XCom
(references and row counts, never rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from batchpilot.artifacts import ArtifactRef
from batchpilot.spec.serialize import to_jsonable
from batchpilot.steps.base import StepResult

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class TaskOutput:
    """A succeeded attempt's datasets (by reference), metadata and row counts."""

    artifact: ArtifactRef | None = None
    side_outputs: Mapping[str, ArtifactRef] = field(default_factory=lambda: _EMPTY)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int | None = None

    @classmethod
    def from_result(cls, result: StepResult) -> TaskOutput:
        """What a step returned, with its metadata made JSON-able."""
        return cls(
            artifact=result.output,
            side_outputs=dict(result.side_outputs) if result.side_outputs else _EMPTY,
            metadata=to_jsonable(result.metadata) if result.metadata else _EMPTY,
            rows_in=result.rows_in,
            rows_out=result.rows_out,
            rows_rejected=result.rows_rejected,
        )

    # -- the state store --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The form stored with the task: ``{"artifact", "side_outputs", "metadata"}``."""
        return {
            "artifact": self.artifact.to_json() if self.artifact else None,
            "side_outputs": {k: v.to_json() for k, v in self.side_outputs.items()},
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(
        cls,
        data: Mapping[str, Any] | None,
        *,
        rows_in: int | None = None,
        rows_out: int | None = None,
        rows_rejected: int | None = None,
    ) -> TaskOutput:
        """Read back :meth:`to_json`'s form (None or ``{}``: a task without output)."""
        data = data or {}
        artifact = data.get("artifact")
        side = data.get("side_outputs") or {}
        return cls(
            artifact=ArtifactRef.from_json(artifact) if artifact else None,
            side_outputs={k: ArtifactRef.from_json(v) for k, v in side.items()},
            metadata=dict(data.get("metadata") or {}),
            rows_in=rows_in,
            rows_out=rows_out,
            rows_rejected=rows_rejected,
        )

    # -- Airflow ----------------------------------------------------------------------------

    def to_xcom(self) -> dict[str, Any]:
        """What an Airflow task returns to XCom: references and row counts only."""
        return {
            "artifact": self.artifact.to_json() if self.artifact else None,
            "side_outputs": {k: v.to_json() for k, v in sorted(self.side_outputs.items())},
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rejected": self.rows_rejected,
        }

    @classmethod
    def from_xcom(cls, payload: Mapping[str, Any] | None) -> TaskOutput:
        """Read an upstream task's XCom (None: a skipped task, or one without output)."""
        payload = payload or {}
        return cls.from_json(
            payload,
            rows_in=payload.get("rows_in"),
            rows_out=payload.get("rows_out"),
            rows_rejected=payload.get("rows_rejected"),
        )


def upstream_inputs(
    upstream: Iterable[str], outputs: Mapping[str, TaskOutput]
) -> tuple[dict[str, ArtifactRef], dict[str, dict[str, ArtifactRef]]]:
    """A task's inputs from its upstream tasks' outputs, by node id: their main outputs,
    and their named side outputs (e.g. ``rejects``). Tasks without output are left out."""
    inputs: dict[str, ArtifactRef] = {}
    side: dict[str, dict[str, ArtifactRef]] = {}
    for parent in upstream:
        output = outputs.get(parent)
        if output is None:
            continue
        if output.artifact is not None:
            inputs[parent] = output.artifact
        if output.side_outputs:
            side[parent] = dict(output.side_outputs)
    return inputs, side
