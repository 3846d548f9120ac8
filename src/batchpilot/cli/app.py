"""The ``batchpilot`` command. It only translates arguments and errors; the rules live below.

Exit codes: 0 success, 1 the run failed, 2 invalid input (bad pipeline,
unknown run, a state that does not allow the action).
"""

from __future__ import annotations

import gc
import json
import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

from batchpilot import __version__
from batchpilot.cli import airflow_cli
from batchpilot.cli.progress import LineProgress, LiveProgress
from batchpilot.cli.render import render_run, render_runs
from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.engine.control import cancel_run, compensate_run, reap_runs
from batchpilot.engine.listener import RunListener
from batchpilot.engine.preflight import check_pipeline, with_pipeline_connections
from batchpilot.engine.results import RunResult
from batchpilot.engine.runs import resume_run, retry_run, start_run
from batchpilot.errors import (
    BatchpilotError,
    ConnectionError,
    RunNotFound,
    RunStateError,
    SpecError,
    SpecErrors,
)
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.spec.loader import PIPELINE_SUFFIXES, parse_document
from batchpilot.states import RunStatus
from batchpilot.steps.registry import default_registry
from batchpilot.store import RunStore

EXIT_OK, EXIT_RUN_FAILED, EXIT_INVALID = 0, 1, 2

app = typer.Typer(
    name="batchpilot",
    help="Run ETL pipelines and SQL batches, watch them, and recover when they fail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Inspect runs.", no_args_is_help=True)
connections_app = typer.Typer(help="Named database connections.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(connections_app, name="connections")
app.add_typer(airflow_cli.export_app, name="export")

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="text (default) or json")
]


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except BatchpilotError as exc:
        _fail(str(exc))


def _store(settings: Settings) -> RunStore:
    try:
        return RunStore.for_home(settings.home, settings.database_url)
    except BatchpilotError as exc:
        _fail(str(exc))


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--param takes KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            params[key.strip()] = value
    return params


def _listener(output: OutputFormat, quiet: bool) -> RunListener:
    if quiet:
        return RunListener()
    if err.is_terminal:
        return LiveProgress(err)
    return LineProgress(err)


def _finish(result: RunResult, output: OutputFormat) -> NoReturn:
    if output is OutputFormat.json:
        _print_json(result.to_dict())
    else:
        render_run(out, result)
    raise typer.Exit(EXIT_OK if result.status is RunStatus.SUCCESS else EXIT_RUN_FAILED)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _report_spec_error(exc: SpecError) -> NoReturn:
    errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
    for e in errors:
        err.print(f"error: {e}", markup=False)
    raise typer.Exit(EXIT_INVALID)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="pipeline file: .yaml, .yml, .json or .py")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE, repeatable")] = [],  # noqa: B006 - typer reads the default
    workers: Annotated[int | None, typer.Option(help="tasks run in parallel")] = None,
    date: Annotated[
        str | None, typer.Option("--date", help="logical date ({{ ds }}), YYYY-MM-DD")
    ] = None,
    output: OutputOption = OutputFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
    on: Annotated[
        airflow_cli.RunOn,
        typer.Option("--on", help="local (this machine) or airflow (BATCHPILOT_AIRFLOW_*)"),
    ] = airflow_cli.RunOn.local,
) -> None:
    """Run a pipeline to the end on this machine (or on Airflow with --on airflow)."""
    params = _parse_params(param)
    settings = _settings()
    if on is airflow_cli.RunOn.airflow:
        airflow_cli.run_on_airflow(
            file,
            params=params,
            date=date,
            store=_store(settings),
            listener=_listener(output, quiet),
            json_output=output is OutputFormat.json,
        )
    try:
        spec = load_pipeline(file)
    except SpecError as exc:
        _report_spec_error(exc)
    _drive(
        lambda settings, store: start_run(
            spec,
            settings=settings,
            store=store,
            params=params,
            ds=date,
            workers=workers,
            listener=_listener(output, quiet),
        ),
        output,
    )


def _drive(work: Callable[[Settings, RunStore], RunResult], output: OutputFormat) -> NoReturn:
    """Run ``work`` (a run, resume or retry) and turn its outcome into output and an
    exit code; Ctrl-C/SIGTERM stop it resumably."""
    settings = _settings()
    store = _store(settings)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = work(settings, store)
    except (RunNotFound, RunStateError) as exc:
        _fail(str(exc))
    except SpecError as exc:
        _report_spec_error(exc)
    except BatchpilotError as exc:  # RunInterrupted among them: it says how to resume
        _fail(str(exc), EXIT_RUN_FAILED)
    _finish(result, output)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="the run to continue")],
    workers: Annotated[int | None, typer.Option(help="tasks run in parallel")] = None,
    output: OutputOption = OutputFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    """Continue an interrupted or failed run; only what did not succeed runs again."""
    _drive(
        lambda settings, store: resume_run(
            run_id,
            settings=settings,
            store=store,
            workers=workers,
            load_file=load_pipeline,
            listener=_listener(output, quiet),
        ),
        output,
    )


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(help="a finished run")],
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="re-run this task (even if it succeeded)")
    ] = None,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="with --task: also every task after it")
    ] = False,
    workers: Annotated[int | None, typer.Option(help="tasks run in parallel")] = None,
    output: OutputOption = OutputFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    """Re-run failed tasks of a finished run in the same run (like clearing tasks in
    Airflow); earlier attempts and their logs stay readable."""
    if downstream and task is None:
        _fail("--downstream goes with --task")
    _drive(
        lambda settings, store: retry_run(
            run_id,
            settings=settings,
            store=store,
            task_id=task,
            downstream=downstream,
            workers=workers,
            load_file=load_pipeline,
            listener=_listener(output, quiet),
        ),
        output,
    )


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="a queued or running run")],
    compensate: Annotated[
        bool, typer.Option("--compensate", help="then undo what its succeeded tasks did")
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Stop a run: running tasks stop (their transactions roll back), pending ones are
    cancelled. No compensation runs unless --compensate."""
    settings = _settings()
    store = _store(settings)
    try:
        record = store.get_run(run_id)
    except RunNotFound as exc:
        _fail(str(exc))
    if airflow_cli.is_remote(record):
        airflow_cli.cancel_remote_run(store, record, json_output=output is OutputFormat.json)
    try:
        result = cancel_run(run_id, settings=settings, store=store, compensate_after=compensate)
    except (RunNotFound, RunStateError) as exc:
        _fail(str(exc))
    if output is OutputFormat.json:
        _print_json(result.to_dict())
    else:
        render_run(out, result)


@app.command("compensate")
def compensate_command(
    run_id: Annotated[str, typer.Argument(help="a failed or cancelled run")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Run the compensations of a failed run's succeeded tasks, latest first
    (for pipelines with compensation: manual, or to retry failed compensations)."""
    settings = _settings()
    store = _store(settings)
    try:
        result = compensate_run(run_id, settings=settings, store=store)
    except (RunNotFound, RunStateError) as exc:
        _fail(str(exc))
    if output is OutputFormat.json:
        _print_json(result.to_dict())
    else:
        render_run(out, result)
    raise typer.Exit(EXIT_RUN_FAILED if result.needs_attention else EXIT_OK)


@runs_app.command("reap")
def runs_reap(output: OutputOption = OutputFormat.text) -> None:
    """Find runs whose process died: fail their open attempts (firing failure
    callbacks once) and leave them resumable; fire callbacks an ended run left unfired."""
    settings = _settings()
    store = _store(settings)
    reaped = reap_runs(settings=settings, store=store)
    if output is OutputFormat.json:
        _print_json(
            [
                {
                    "run_id": r.run_id,
                    "status": r.status.value,
                    "closed_tasks": r.closed_tasks,
                    "callbacks_fired": r.callbacks_fired,
                }
                for r in reaped
            ]
        )
        return
    if not reaped:
        out.print("no dead runs")
    for r in reaped:
        if not r.closed_tasks and r.status is not RunStatus.FAILED:
            out.print(
                f"{r.run_id}: {r.status.value} before its process died; "
                f"{r.callbacks_fired} callbacks it left unfired fired now",
                markup=False,
            )
            continue
        tasks = ", ".join(r.closed_tasks) or "none running"
        out.print(
            f"{r.run_id}: failed (tasks whose process died: {tasks}); "
            f"{r.callbacks_fired} callbacks fired; resume with: batchpilot resume "
            f"{r.run_id}",
            markup=False,
        )


def _pipeline_files(paths: list[Path]) -> list[tuple[Path, bool]]:
    """Files to validate; (path, named explicitly)."""
    found: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix.lower() in PIPELINE_SUFFIXES and candidate.is_file():
                    found.append((candidate, False))
        else:
            found.append((path, True))
    return found


def _looks_like_pipeline(path: Path) -> bool:
    try:
        document = parse_document(path)
    except SpecError:
        return True  # a broken file that may be a pipeline: report it
    return isinstance(document, dict) and "nodes" in document


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="pipeline files or folders")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Check every pipeline file under PATHS (like a DAG import test); names each error."""
    settings = _settings()
    registry = default_registry()
    report = []
    for path, explicit in _pipeline_files(paths):
        if not explicit and not _looks_like_pipeline(path):
            continue
        try:
            spec = load_pipeline(path)
            check_pipeline(spec, registry, with_pipeline_connections(settings, spec).connections)
            report.append({"path": str(path), "ok": True, "pipeline": spec.name, "errors": []})
        except SpecError as exc:
            errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
            report.append({"path": str(path), "ok": False, "errors": [str(e) for e in errors]})
    if not report:
        _fail(f"no pipeline files found under {', '.join(str(p) for p in paths)}")
    if output is OutputFormat.json:
        _print_json(report)
    else:
        for item in report:
            if item["ok"]:
                out.print(f"ok      {item['path']} ({item['pipeline']})", markup=False)
            else:
                out.print(f"INVALID {item['path']}", markup=False)
                for message in item["errors"]:
                    out.print(f"  {message}", markup=False)
        bad = sum(not i["ok"] for i in report)
        out.print(f"{len(report) - bad} valid, {bad} invalid")
    raise typer.Exit(EXIT_INVALID if any(not i["ok"] for i in report) else EXIT_OK)


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="how many runs")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """List runs, newest first."""
    store = _store(_settings())
    records = airflow_cli.refresh_remote_runs(
        store, store.list_runs(limit=limit, pipeline=pipeline)
    )
    if output is OutputFormat.json:
        _print_json(
            [
                {
                    "run_id": r.run_id,
                    "pipeline": r.pipeline,
                    "status": r.status.value,
                    "started_at": r.started_at.isoformat() if r.started_at else None,
                    "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                    "needs_attention": r.needs_attention,
                    "executor": r.executor,
                }
                for r in records
            ]
        )
    else:
        render_runs(out, records)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show a run's status and each task's state, attempts, rows, duration and error."""
    store = _store(_settings())
    airflow_cli.refresh_if_remote(store, run_id)
    try:
        result = RunResult.load(store, run_id)
    except RunNotFound as exc:
        _fail(str(exc))
    if output is OutputFormat.json:
        _print_json(result.to_dict())
    else:
        render_run(out, result)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    task: Annotated[str | None, typer.Option("--task", "-t", help="only this task")] = None,
    attempt: Annotated[int | None, typer.Option(help="only this attempt")] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Print the logs of a run's task attempts (each attempt keeps its own)."""
    store = _store(_settings())
    try:
        run_record = store.get_run(run_id)
    except RunNotFound as exc:
        _fail(str(exc))
    task_ids = {t.task_id for t in store.get_tasks(run_record.run_id)}
    if task is not None and task not in task_ids:
        _fail(
            f"run {run_record.run_id} has no task '{task}' (tasks: {', '.join(sorted(task_ids))})"
        )
    if airflow_cli.is_remote(run_record):
        airflow_cli.print_remote_logs(
            run_record, task=task, attempt=attempt, json_output=output is OutputFormat.json
        )
    records = [
        a
        for a in store.get_attempts(run_record.run_id, task)
        if attempt is None or a.attempt == attempt
    ]
    items = []
    for a in records:
        text = ""
        if a.log_path and Path(a.log_path).exists():
            text = Path(a.log_path).read_text(encoding="utf-8", errors="replace")
        items.append(
            {
                "task_id": a.task_id,
                "attempt": a.attempt,
                "state": a.state.value,
                "error": a.error,
                "log_path": a.log_path,
                "log": text,
            }
        )
    if output is OutputFormat.json:
        _print_json(items)
        return
    if not items:
        out.print("no attempts yet")
    for item in items:
        out.rule(f"{item['task_id']} · attempt {item['attempt']} · {item['state']}")
        out.print(item["log"].rstrip() or "(empty log)", markup=False)


@connections_app.command("list")
def connections_list(output: OutputOption = OutputFormat.text) -> None:
    """List named connections, passwords masked."""
    registry: ConnectionRegistry = _settings().connections
    items = [{"name": c.name, "url": c.masked_url, "source": c.origin} for c in registry]
    if output is OutputFormat.json:
        _print_json(items)
    else:
        table = Table("name", "url", "defined in")
        for item in items:
            table.add_row(item["name"], item["url"], item["source"])
        out.print(table)
    invalid = [str(exc) for c in registry if (exc := _connection_problem(c))]
    if invalid:
        _fail("\n".join(invalid))


def _connection_problem(connection: Connection) -> ConnectionError | None:
    try:
        connection.check()
    except ConnectionError as exc:
        return exc
    return None


@connections_app.command("test")
def connections_test(name: Annotated[str, typer.Argument(help="connection name")]) -> None:
    """Connect and run ``SELECT 1``; exit 1 when the database cannot be reached."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    registry = _settings().connections
    try:
        conn = registry.get(name)
        conn.check()
        engine = create_engine(conn.sqlalchemy_url())
    except ConnectionError as exc:
        _fail(str(exc))
    try:
        with engine.connect() as db:
            db.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(
            f"connection '{name}' ({conn.masked_url}) failed: {registry.redact(reason)}",
            EXIT_RUN_FAILED,
        )
    finally:
        engine.dispose()
    out.print(f"ok: connection '{name}' ({conn.masked_url}) answered", markup=False)


@app.command()
def steps(output: OutputOption = OutputFormat.text) -> None:
    """List the step types this installation knows (built-in and plugins)."""
    registry = default_registry()
    items = []
    for name in registry.names():
        cls = registry.get(name)
        fields = list(cls.Config.model_fields)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        items.append({"type": name, "config": fields, "description": doc})
    if output is OutputFormat.json:
        _print_json(items)
        return
    table = Table("type", "config fields", "what it does")
    for item in items:
        table.add_row(item["type"], ", ".join(item["config"]), item["description"])
    out.print(table)


def _version(value: bool) -> None:
    if value:
        out.print(f"batchpilot {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="show version")
    ] = False,
) -> None:
    """batchpilot: pipelines as graphs, an embedded engine, resume after a crash."""


def main() -> None:
    """Console-script entry point."""
    # Everything imported so far lives until exit: move it out of the collector's way,
    # so neither the run's collections nor the interpreter's exit re-scan it (~0.2 s).
    gc.freeze()
    app()
