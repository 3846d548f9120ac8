"""The Airflow side of the ``batchpilot`` command: ``export airflow``, ``run --on airflow``,
and the remote half of ``runs list/show``, ``logs`` and ``cancel``.

Like ``app.py`` it only translates arguments and errors; the rules live in
:mod:`batchpilot.airflow`. Exit codes: 0 success, 1 the run failed or was
cancelled, 2 invalid input or an Airflow that cannot be used (down, wrong
password, a DAG it cannot import).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from batchpilot.airflow.client import AirflowClient
from batchpilot.airflow.errors import AirflowError
from batchpilot.airflow.export import export_pipeline, source_label
from batchpilot.airflow.remote import (
    EXECUTOR,
    RemoteRunFollower,
    cancel_run,
    deploy_pipeline,
    refresh_run,
    remote_logs,
    trigger_run,
)
from batchpilot.airflow.settings import AirflowSettings
from batchpilot.cli.render import render_run
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import check_pipeline, merged_params
from batchpilot.engine.results import RunResult
from batchpilot.errors import BatchpilotError, RunNotFound, SpecError, SpecErrors
from batchpilot.pipeline import load_pipeline
from batchpilot.spec.loader import PIPELINE_SUFFIXES, parse_document
from batchpilot.states import RunStatus
from batchpilot.steps.registry import default_registry
from batchpilot.store import RunStore
from batchpilot.store.records import RunRecord

EXIT_OK, EXIT_RUN_FAILED, EXIT_INVALID = 0, 1, 2

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

export_app = typer.Typer(help="Export pipelines to other orchestrators.", no_args_is_help=True)


class RunOn(StrEnum):
    """Where ``batchpilot run`` executes the pipeline."""

    local = "local"
    airflow = "airflow"


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def _report_spec_error(exc: SpecError) -> NoReturn:
    for error in exc.errors if isinstance(exc, SpecErrors) else [exc]:
        err.print(f"error: {error}", markup=False)
    raise typer.Exit(EXIT_INVALID)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _client(settings: AirflowSettings) -> AirflowClient:
    try:
        url, username, password = settings.require_api()
    except AirflowError as exc:
        _fail(str(exc))
    return AirflowClient(url, username, password)


def _airflow_settings() -> AirflowSettings:
    try:
        return AirflowSettings.from_env()
    except AirflowError as exc:
        _fail(str(exc))


# -- export ---------------------------------------------------------------------------------


def _pipeline_files(paths: list[Path]) -> list[Path]:
    """Files named explicitly, and the YAML/JSON pipelines (with ``nodes``) under folders."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            if candidate.suffix.lower() in PIPELINE_SUFFIXES and candidate.is_file():
                try:
                    document = parse_document(candidate)
                except SpecError:
                    found.append(candidate)  # broken: report it
                    continue
                if isinstance(document, dict) and "nodes" in document:
                    found.append(candidate)
    return found


@export_app.command("airflow")
def export_airflow(
    paths: Annotated[list[Path], typer.Argument(help="pipeline files or folders")],
    out_dir: Annotated[Path, typer.Option("--out", help="the DAGs folder to write into")],
    artifacts: Annotated[
        str | None,
        typer.Option(
            help="shared folder for datasets between tasks, seen by every worker "
            "(default: $BATCHPILOT_AIRFLOW_ARTIFACTS on the worker)"
        ),
    ] = None,
) -> None:
    """Write one Airflow DAG file per pipeline; refuse (exit 2) what Airflow cannot express."""
    files = _pipeline_files(paths)
    if not files:
        _fail(f"no pipeline files found under {', '.join(str(p) for p in paths)}")
    registry = default_registry()
    refused = 0
    for path in files:
        try:
            spec = load_pipeline(path)
            check_pipeline(spec, registry, None)
            exported = export_pipeline(
                spec, out_dir, source=source_label(path), artifacts=artifacts
            )
        except SpecError as exc:
            refused += 1
            for error in exc.errors if isinstance(exc, SpecErrors) else [exc]:
                err.print(f"error: {error}", markup=False)
            continue
        verb = "wrote" if exported.changed else "unchanged"
        out.print(f"{verb} {exported.path} (DAG {exported.dag_id})", markup=False)
    raise typer.Exit(EXIT_INVALID if refused else EXIT_OK)


# -- run --on airflow -----------------------------------------------------------------------


def run_on_airflow(
    file: Path,
    *,
    params: dict[str, Any],
    date: str | None,
    store: RunStore,
    listener: RunListener,
    json_output: bool,
) -> NoReturn:
    """Deploy the pipeline's DAG, trigger it, follow it to the end; exits 0, 1 or 2."""
    settings = _airflow_settings()
    client = _client(settings)
    try:
        dags_folder = settings.require_dags_folder()
    except AirflowError as exc:
        _fail(str(exc))
    try:
        spec = load_pipeline(file)
        check_pipeline(spec, default_registry(), None, params=merged_params(spec, params))
    except SpecError as exc:
        _report_spec_error(exc)
    try:
        client.login()
        deploy_pipeline(
            client,
            spec,
            dags_folder=dags_folder,
            source=source_label(file),
            artifacts=settings.artifacts,
            parse_timeout_s=settings.parse_timeout_s,
            poll_s=settings.poll_s,
        )
        run = trigger_run(client, store, spec, params=params, ds=date)
    except SpecError as exc:
        _report_spec_error(exc)
    except BatchpilotError as exc:
        _fail(str(exc))
    follower = RemoteRunFollower(client, store, run, listener=listener, poll_s=settings.poll_s)
    try:
        status = follower.follow()
    except KeyboardInterrupt:
        _fail(
            f"stopped following; run {run.run_id} goes on in Airflow "
            f"(batchpilot runs show {run.run_id}, batchpilot cancel {run.run_id})",
            EXIT_RUN_FAILED,
        )
    except BatchpilotError as exc:
        _fail(
            f"lost track of run {run.run_id} in Airflow: {exc} "
            f"(batchpilot runs show {run.run_id} tries again)",
            EXIT_RUN_FAILED,
        )
    result = RunResult.load(store, run.run_id)
    if json_output:
        _print_json(result.to_dict())
    else:
        render_run(out, result)
    raise typer.Exit(EXIT_OK if status is RunStatus.SUCCESS else EXIT_RUN_FAILED)


# -- the remote half of runs list/show, logs, cancel ----------------------------------------


def is_remote(record: RunRecord) -> bool:
    """True for a run driven by Airflow."""
    return record.executor == EXECUTOR


def refresh_remote_runs(store: RunStore, records: list[RunRecord]) -> list[RunRecord]:
    """Bring unfinished Airflow runs up to date before they are listed or shown.

    When Airflow cannot be asked, one warning line is printed and the stored
    state is shown as it is.
    """
    stale = [r for r in records if is_remote(r) and not r.status.is_terminal()]
    if not stale:
        return records
    settings = _airflow_settings()
    try:
        url, username, password = settings.require_api()
    except AirflowError as exc:
        err.print(f"warning: Airflow runs shown as last seen: {exc}", markup=False)
        return records
    client = AirflowClient(url, username, password)
    fresh: dict[str, RunRecord] = {}
    for record in stale:
        try:
            fresh[record.run_id] = refresh_run(client, store, record)
        except BatchpilotError as exc:
            err.print(f"warning: Airflow runs shown as last seen: {exc}", markup=False)
            break
    return [fresh.get(r.run_id, r) for r in records]


def refresh_if_remote(store: RunStore, run_id: str) -> None:
    """Refresh one run from Airflow if it is an unfinished Airflow run (else do nothing)."""
    try:
        record = store.get_run(run_id)
    except RunNotFound:
        return
    refresh_remote_runs(store, [record])


def print_remote_logs(
    record: RunRecord, *, task: str | None, attempt: int | None, json_output: bool
) -> NoReturn:
    """Print an Airflow run's task logs, read through Airflow's API; exits 0 or 2."""
    client = _client(_airflow_settings())
    try:
        items = remote_logs(client, record, task=task, attempt=attempt)
    except BatchpilotError as exc:
        _fail(str(exc))
    if json_output:
        _print_json(items)
        raise typer.Exit(EXIT_OK)
    if not items:
        out.print("no attempts yet")
    for item in items:
        out.rule(f"{item['task_id']} · attempt {item['attempt']} · {item['state']}")
        out.print(item["log"].rstrip() or "(empty log)", markup=False)
    raise typer.Exit(EXIT_OK)


def cancel_remote_run(store: RunStore, record: RunRecord, *, json_output: bool) -> NoReturn:
    """Cancel an Airflow run (its DAG run is marked failed); exits 0, or 2 if it already ended."""
    if record.status.is_terminal():
        _fail(f"run {record.run_id} already ended ({record.status.value}); nothing to cancel")
    client = _client(_airflow_settings())
    try:
        cancel_run(client, store, record)
    except BatchpilotError as exc:
        _fail(str(exc))
    result = RunResult.load(store, record.run_id)
    if json_output:
        _print_json(result.to_dict())
    else:
        render_run(out, result)
    raise typer.Exit(EXIT_OK)
