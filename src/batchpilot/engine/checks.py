"""Checks that run nothing: is a pipeline file valid, does a named connection answer."""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from batchpilot.engine.preflight import check_pipeline, with_pipeline_connections
from batchpilot.errors import SpecError, SpecErrors
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.spec.monitoring import check_routes
from batchpilot.spec.triggers import trigger_graph_errors
from batchpilot.steps.registry import StepRegistry, default_registry


@dataclass(frozen=True)
class PipelineCheck:
    """Whether one pipeline file is valid; ``errors`` names file, node and field of each."""

    path: Path
    ok: bool
    pipeline: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``batchpilot validate --output json`` prints for each file."""
        if self.ok:
            return {"path": str(self.path), "ok": True, "pipeline": self.pipeline, "errors": []}
        return {"path": str(self.path), "ok": False, "errors": list(self.errors)}


def check_pipeline_file(
    path: Path,
    *,
    settings: Settings,
    registry: StepRegistry | None = None,
    channels: Container[str] | None = None,
) -> PipelineCheck:
    """Load and check a pipeline file as a run would (steps, configs, connections, params,
    and with ``channels`` the channels its ``notify:`` routes name), running nothing.
    Never raises for an invalid pipeline: the result lists its errors."""
    try:
        spec = load_pipeline(path)
        if channels is not None:
            check_routes(spec.notify, channels, path=str(path))
        connections = with_pipeline_connections(settings, spec).connections
        check_pipeline(
            spec,
            registry or default_registry(),
            connections,
            output_roots=settings.output_roots,
        )
    except SpecError as exc:
        errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
        return PipelineCheck(path=path, ok=False, errors=[str(e) for e in errors])
    return PipelineCheck(path=path, ok=True, pipeline=spec.name)


def with_trigger_graph(report: list[PipelineCheck], paths: Sequence[Path]) -> list[PipelineCheck]:
    """``report`` with the valid files of each folder in ``paths`` also checked together:
    an ``after`` trigger on a pipeline not in the folder, or a cycle of them, is an error."""
    checked = list(report)
    for folder in (p.resolve() for p in paths if p.is_dir()):
        members = {
            i: load_pipeline(c.path)
            for i, c in enumerate(checked)
            if c.ok and c.path.resolve().is_relative_to(folder)
        }
        by_name = {spec.name: (i, spec) for i, spec in members.items()}
        errors = trigger_graph_errors(
            {name: spec.triggers for name, (_, spec) in by_name.items()},
            {name: str(checked[i].path) for name, (i, _) in by_name.items()},
        )
        for name, message in errors.items():
            index = by_name[name][0]
            checked[index] = replace(checked[index], ok=False, errors=[message])
    return checked


@dataclass(frozen=True)
class ConnectionCheck:
    """The answer of one named connection to ``SELECT 1``; nothing in it shows a password."""

    name: str
    masked_url: str
    ok: bool
    reason: str | None = None


def check_connection(name: str, *, settings: Settings) -> ConnectionCheck:
    """Connect to the named connection and run ``SELECT 1``.

    Raises :class:`ConnectionError` for an unknown name or a malformed URL; a
    database that cannot be reached is an answer (``ok`` false, with the
    driver's first line, passwords redacted), not an error.
    """
    registry = settings.connections
    connection = registry.get(name)
    connection.check()
    url = connection.sqlalchemy_url()
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError) as exc:
        return ConnectionCheck(name, connection.masked_url, False, registry.redact(_first(exc)))
    try:
        with engine.connect() as db:
            db.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = registry.redact(_first(getattr(exc, "orig", None) or exc))
        return ConnectionCheck(name, connection.masked_url, False, reason)
    finally:
        engine.dispose()
    return ConnectionCheck(name, connection.masked_url, True)


def _first(exc: object) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
