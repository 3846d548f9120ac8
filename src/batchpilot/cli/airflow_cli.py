"""The Airflow side of the ``batchpilot`` command: ``export airflow`` and ``run --on``.

Runs on Airflow go through the engine's services like local ones (the
``airflow`` executor); this module only holds what is Airflow-specific in
the command line. Exit codes as in :mod:`batchpilot.cli.output`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from batchpilot.airflow.export import export_pipeline, source_label
from batchpilot.cli.errors import exit_codes, print_error
from batchpilot.cli.output import EXIT_INVALID, EXIT_OK, fail, out
from batchpilot.discovery import discover_pipeline_files
from batchpilot.engine.preflight import check_pipeline
from batchpilot.errors import SpecError
from batchpilot.pipeline import load_pipeline
from batchpilot.s3 import parse_s3_url
from batchpilot.steps.registry import default_registry

export_app = typer.Typer(help="Export pipelines to other orchestrators.", no_args_is_help=True)


class RunOn(StrEnum):
    """Where ``batchpilot run`` executes the pipeline (an executor's name)."""

    local = "local"
    airflow = "airflow"


@export_app.command("airflow")
def export_airflow(
    paths: Annotated[list[Path], typer.Argument(help="pipeline files or folders")],
    out_dir: Annotated[Path, typer.Option("--out", help="the DAGs folder to write into")],
    artifacts: Annotated[
        str | None,
        typer.Option(
            help="where datasets between tasks go, seen by every worker: a shared folder "
            "or s3://bucket/prefix (default: $BATCHPILOT_AIRFLOW_ARTIFACTS on the worker)"
        ),
    ] = None,
) -> None:
    """Write one Airflow DAG file per pipeline; refuse (exit 2) what Airflow cannot express."""
    if artifacts is not None and "://" in artifacts:
        with exit_codes(EXIT_INVALID):
            artifacts = str(parse_s3_url(artifacts, variable="--artifacts"))
    files = discover_pipeline_files(paths)
    if not files:
        fail(f"no pipeline files found under {', '.join(str(p) for p in paths)}")
    registry = default_registry()
    refused = 0
    for path in files:
        try:
            spec = load_pipeline(path)
            check_pipeline(spec, registry, None)
            exported = export_pipeline(
                spec, out_dir, source=source_label(path), artifacts=artifacts
            )
        except SpecError as exc:  # reported, and the other files are still exported
            refused += 1
            print_error(exc)
            continue
        verb = "wrote" if exported.changed else "unchanged"
        out.print(f"{verb} {exported.path} (DAG {exported.dag_id})", markup=False)
    raise typer.Exit(EXIT_INVALID if refused else EXIT_OK)
