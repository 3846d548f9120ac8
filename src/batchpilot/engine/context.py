"""The frozen context of one run: built once when a run starts (or is resumed, retried,
compensated, reaped), then passed whole to everything that works on it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from batchpilot.connections import ConnectionRegistry
from batchpilot.engine.building import template_context
from batchpilot.errors import StoreError
from batchpilot.settings import Settings
from batchpilot.spec.model import NodeSpec, PipelineSpec
from batchpilot.steps.registry import StepRegistry
from batchpilot.store import RunRecord, RunStore

_USERINFO = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")


@dataclass(frozen=True)
class RunContext:
    """Everything about one run that does not change while it runs.

    ``settings`` already holds the pipeline's default connections. ``store`` is
    None (and ``owner`` empty) on an Airflow worker, where Airflow keeps the state.
    """

    spec: PipelineSpec
    run_id: str
    params: Mapping[str, Any]
    #: the logical date, ``YYYY-MM-DD`` (``{{ ds }}``)
    ds: str
    settings: Settings
    registry: StepRegistry
    #: the run's folder: ``artifacts/`` and ``logs/``
    run_dir: Path
    store: RunStore | None = None
    #: the process that drives the run (``host:pid:token``), as the store records it
    owner: str = ""
    #: how many times the run has ended before, plus one (keys run-level callbacks)
    generation: int = 1
    #: per task, how many times it succeeded before in this run (see StepContext.load_key)
    reruns: Mapping[str, int] = field(default_factory=dict)
    #: the folder ``{{ pipeline_dir }}`` names
    pipeline_dir: str = ""

    @classmethod
    def create(
        cls,
        spec: PipelineSpec,
        *,
        run_id: str,
        params: Mapping[str, Any],
        ds: str,
        settings: Settings,
        registry: StepRegistry,
        store: RunStore | None = None,
        owner: str = "",
        generation: int = 1,
        reruns: Mapping[str, int] | None = None,
        run_dir: Path | None = None,
        pipeline_dir: str | None = None,
    ) -> RunContext:
        """Build the context; ``run_dir`` defaults to the run's folder under the home."""
        return cls(
            spec=spec,
            run_id=run_id,
            params=MappingProxyType(dict(params)),
            ds=ds,
            settings=settings,
            registry=registry,
            run_dir=run_dir if run_dir is not None else settings.runs_dir / run_id,
            store=store,
            owner=owner,
            generation=generation,
            reruns=MappingProxyType(dict(reruns or {})),
            pipeline_dir=pipeline_dir or spec.folder or os.getcwd(),
        )

    @classmethod
    def of_stored_run(
        cls,
        run: RunRecord,
        spec: PipelineSpec,
        *,
        settings: Settings,
        registry: StepRegistry,
        store: RunStore,
        owner: str = "",
        generation: int = 1,
        reruns: Mapping[str, int] | None = None,
    ) -> RunContext:
        """The context to act on a run already in the store (resume it, compensate it,
        fire its callbacks): its id, params and logical date, with ``spec``."""
        return cls.create(
            spec,
            run_id=run.run_id,
            params=run.params,
            ds=run.ds,
            settings=settings,
            registry=registry,
            store=store,
            owner=owner,
            generation=generation,
            reruns=reruns,
        )

    @property
    def state_store(self) -> RunStore:
        """The state store; raises :class:`StoreError` on a worker that has none."""
        if self.store is None:
            raise StoreError(f"run {self.run_id} has no state store here (it runs on Airflow)")
        return self.store

    @property
    def connections(self) -> ConnectionRegistry:
        """The run's connections (the environment's, then the pipeline's defaults)."""
        return self.settings.connections

    def redact(self, text: str) -> str:
        """``text`` with every known password masked by ``***``; never raises (a URL
        that does not parse still has any ``user:password@`` part masked)."""
        try:
            return self.connections.redact(text)
        except Exception:
            return _USERINFO.sub(r"\1***@", text)

    @cached_property
    def log_dir(self) -> Path:
        """The folder of the run's attempt logs."""
        return self.run_dir / "logs"

    @cached_property
    def artifacts_dir(self) -> Path:
        """The folder of the run's datasets."""
        return self.run_dir / "artifacts"

    def log_path(self, task_id: str, attempt: int) -> Path:
        """The log file of attempt ``attempt`` of ``task_id``."""
        return self.log_dir / f"{task_id}.attempt-{attempt}.log"

    @cached_property
    def nodes(self) -> Mapping[str, NodeSpec]:
        """The pipeline's nodes by id."""
        return MappingProxyType({n.id: n for n in self.spec.nodes})

    def template_variables(self, task_id: str = "") -> dict[str, Any]:
        """Variables a config template sees: params, pipeline_dir, run_id, ds, ds_nodash,
        pipeline, task_id. A new dict each call (the caller may add to it)."""
        if not self.pipeline_dir:  # the folder is the working directory at each call
            return template_context(
                self.spec,
                params=self.params,
                run_id=self.run_id,
                ds=self.ds,
                task_id=task_id,
                pipeline_dir=self.pipeline_dir,
            )
        run_wide = self._run_template_variables
        return {
            **run_wide,
            "params": dict(run_wide["params"]),
            "trigger": dict(run_wide["trigger"]),
            "task_id": task_id,
        }

    @cached_property
    def _run_template_variables(self) -> Mapping[str, Any]:
        """The template variables every task of the run shares, worked out once."""
        return template_context(
            self.spec,
            params=self.params,
            run_id=self.run_id,
            ds=self.ds,
            pipeline_dir=self.pipeline_dir,
        )
