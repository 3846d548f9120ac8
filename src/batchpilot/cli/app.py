"""The ``batchpilot`` command. It only translates arguments and errors; the rules live below.

The commands call the engine's services (:class:`batchpilot.engine.RunService`);
:mod:`batchpilot.cli.errors` maps errors to exit codes in one place and
:mod:`batchpilot.cli.output` prints. Exit codes: 0 success, 1 the run failed,
2 invalid input (bad pipeline, unknown run, a state that does not allow the action).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from batchpilot import __version__
from batchpilot.cli import (
    airflow_cli,
    alerts_cli,
    backfill_cli,
    clean_cli,
    connections_cli,
    notify_cli,
    serve_cli,
    stats_cli,
    tokens_cli,
)
from batchpilot.cli.errors import exit_codes, exit_for
from batchpilot.cli.output import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_RUN_FAILED,
    OutputFormat,
    OutputOption,
    err,
    fail,
    out,
    print_json,
    print_result,
    warn,
)
from batchpilot.cli.progress import LineProgress, LiveProgress
from batchpilot.cli.render import render_runs
from batchpilot.discovery import discover_pipeline_files
from batchpilot.engine import (
    ListenerChain,
    RunListener,
    RunResult,
    RunService,
    check_pipeline_file,
    run_summary,
    with_trigger_graph,
)
from batchpilot.errors import BatchpilotError, RunInterrupted
from batchpilot.executors import default_executors
from batchpilot.monitor.run_end import RunEndMonitor, wait_for_deliveries
from batchpilot.notify import ChannelRegistry
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.spec.dates import parse_logical_date
from batchpilot.spec.monitoring import check_routes
from batchpilot.spec.params import ParamText
from batchpilot.states import RunStatus
from batchpilot.steps.registry import default_registry
from batchpilot.store import RunStore

app = typer.Typer(
    name="batchpilot",
    help="Run ETL pipelines and SQL batches, watch them, and recover when they fail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Inspect runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(connections_cli.connections_app, name="connections")
app.add_typer(airflow_cli.export_app, name="export")
app.add_typer(serve_cli.pipelines_app, name="pipelines")
app.add_typer(notify_cli.notify_app, name="notify")
app.command("serve")(serve_cli.serve)
app.command("pause")(serve_cli.pause)
app.command("unpause")(serve_cli.unpause)
app.command("trigger")(serve_cli.trigger)
app.add_typer(backfill_cli.backfill_app, name="backfill")
app.add_typer(tokens_cli.tokens_app, name="tokens")
app.add_typer(alerts_cli.alerts_app, name="alerts")
app.command("stats")(stats_cli.stats)
app.command("clean")(clean_cli.clean)


def _settings() -> Settings:
    with exit_codes(EXIT_INVALID):
        return Settings.from_env()


def _store(settings: Settings) -> RunStore:
    with exit_codes(EXIT_INVALID):
        return RunStore.for_home(settings.home, settings.database_url)


def _service() -> RunService:
    settings = _settings()
    return RunService(settings=settings, store=_store(settings), executors=default_executors())


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--param takes KEY=VALUE, got {item!r}")
        params[key.strip()] = ParamText(value)  # typed by resolve_params, per its declaration
    return params


def _channels(settings: Settings) -> ChannelRegistry:
    """The notification channels of the home and environment; exit 2 when one is malformed."""
    with exit_codes(EXIT_INVALID):
        return ChannelRegistry.from_sources(os.environ, settings.home)


def _lenient_channels() -> ChannelRegistry:
    """The channels, or none (with a warning) when they do not read: resuming a run must
    not depend on them."""
    try:
        return ChannelRegistry.from_sources(os.environ, Settings.from_env().home)
    except BatchpilotError as exc:
        warn(f"no notifications for this run: {exc}")
        return ChannelRegistry()


def _listener(output: OutputFormat, quiet: bool) -> RunListener:
    if quiet:
        return RunListener()
    if err.is_terminal:
        return LiveProgress(err)
    return LineProgress(err)


def _watched(listener: RunListener, service: RunService, channels: ChannelRegistry) -> RunListener:
    """``listener`` followed by the monitor, which evaluates the alert rules at the run's end."""
    return ListenerChain(listener, RunEndMonitor(service.store, channels))


#: what stops a run, resumably: Ctrl-C and SIGTERM
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C or SIGTERM: the engine stops the run resumably on ``KeyboardInterrupt``."""
    raise KeyboardInterrupt


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
    settings = _settings()  # a bad BATCHPILOT_* setting is reported before the pipeline is read
    channels = _channels(settings)
    with exit_codes(EXIT_INVALID):
        date = parse_logical_date(date) if date is not None else None
        spec = load_pipeline(file)
        check_routes(spec.notify, channels, path=spec.source_path)
    _drive(
        lambda service: service.start(
            spec,
            on=on.value,
            params=params,
            ds=date,
            workers=workers,
            listener=_watched(_listener(output, quiet), service, channels),
        ),
        output,
    )


def _drive(work: Callable[[RunService], RunResult], output: OutputFormat) -> NoReturn:
    """Run ``work`` (a run, resume or retry) and turn its outcome into output and an
    exit code; Ctrl-C/SIGTERM stop it resumably.

    Both handlers are installed here, as ``serve`` and ``backfill`` do: Python raises
    ``KeyboardInterrupt`` on SIGINT only in a process that did not inherit SIGINT ignored,
    and a process started in the background of a non-interactive shell (``batchpilot run
    … &`` in a script, a test suite started that way) inherits it ignored, which left
    the run deaf to Ctrl-C and to ``kill -INT``."""
    service = _service()
    previous = {signum: signal.signal(signum, _interrupt) for signum in _STOP_SIGNALS}
    try:
        result = work(service)
    except RunInterrupted as exc:
        _report_interrupted(service, exc, output)
    except BatchpilotError as exc:
        wait_for_deliveries()
        exit_for(exc, EXIT_RUN_FAILED)
    finally:  # the caller's handlers again (the command can run inside a test's process)
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
    print_result(result, output)
    wait_for_deliveries()  # the run's notifications, sent off its path, before exiting
    raise typer.Exit(EXIT_OK if result.status is RunStatus.SUCCESS else EXIT_RUN_FAILED)


def _report_interrupted(service: RunService, exc: RunInterrupted, output: OutputFormat) -> NoReturn:
    """An interrupted run still prints its run object with ``--output json`` (its ``error``
    says how to resume it), then ends as every interruption does: the message, exit 1."""
    if output is OutputFormat.json:
        with exit_codes(EXIT_RUN_FAILED):
            print_result(service.show_run(exc.run_id, warn=warn), output)
    exit_for(exc, EXIT_RUN_FAILED)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="the run to continue")],
    workers: Annotated[int | None, typer.Option(help="tasks run in parallel")] = None,
    output: OutputOption = OutputFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")] = False,
) -> None:
    """Continue an interrupted or failed run; only what did not succeed runs again."""
    _drive(
        lambda service: service.resume(
            run_id,
            workers=workers,
            listener=_watched(_listener(output, quiet), service, _lenient_channels()),
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
        fail("--downstream goes with --task")
    _drive(
        lambda service: service.retry(
            run_id,
            task=task,
            downstream=downstream,
            workers=workers,
            listener=_watched(_listener(output, quiet), service, _lenient_channels()),
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
    service = _service()
    with exit_codes(EXIT_INVALID):
        result = service.cancel(run_id, compensate=compensate)
    print_result(result, output)


@app.command("compensate")
def compensate_command(
    run_id: Annotated[str, typer.Argument(help="a failed or cancelled run")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Run the compensations of a failed run's succeeded tasks, latest first
    (for pipelines with compensation: manual, or to retry failed compensations)."""
    service = _service()
    with exit_codes(EXIT_RUN_FAILED):
        result = service.compensate(run_id)
    print_result(result, output)
    raise typer.Exit(EXIT_RUN_FAILED if result.needs_attention else EXIT_OK)


@runs_app.command("reap")
def runs_reap(output: OutputOption = OutputFormat.text) -> None:
    """Find runs whose process died: fail their open attempts (firing failure
    callbacks once) and leave them resumable; fire callbacks an ended run left unfired."""
    service = _service()
    with exit_codes(EXIT_RUN_FAILED):
        reaped = service.reap()
    if output is OutputFormat.json:
        print_json(
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


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="pipeline files or folders")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Check every pipeline file under PATHS (like a DAG import test); names each error."""
    settings = _settings()
    registry = default_registry()
    channels = _channels(settings)
    report = [
        check_pipeline_file(path, settings=settings, registry=registry, channels=channels)
        for path in discover_pipeline_files(paths)
    ]
    report = with_trigger_graph(report, paths)
    if not report:
        fail(f"no pipeline files found under {', '.join(str(p) for p in paths)}")
    if output is OutputFormat.json:
        print_json([check.to_dict() for check in report])
    else:
        for check in report:
            if check.ok:
                out.print(f"ok      {check.path} ({check.pipeline})", markup=False)
            else:
                out.print(f"INVALID {check.path}", markup=False)
                for message in check.errors:
                    out.print(f"  {message}", markup=False)
        bad = sum(not c.ok for c in report)
        out.print(f"{len(report) - bad} valid, {bad} invalid")
    raise typer.Exit(EXIT_INVALID if any(not c.ok for c in report) else EXIT_OK)


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="how many runs")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline")] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """List runs, newest first."""
    service = _service()
    with exit_codes(EXIT_INVALID):
        records = service.list_runs(limit=limit, pipeline=pipeline, warn=warn)
    if output is OutputFormat.json:
        print_json([run_summary(r) for r in records])
    else:
        render_runs(out, records)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show a run's status and each task's state, attempts, rows, duration and error."""
    service = _service()
    with exit_codes(EXIT_INVALID):
        result = service.show_run(run_id, warn=warn)
    print_result(result, output)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    task: Annotated[str | None, typer.Option("--task", "-t", help="only this task")] = None,
    attempt: Annotated[int | None, typer.Option(help="only this attempt")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="print new lines until the run ends")
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Print the logs of a run's task attempts (each attempt keeps its own): the local
    files while they exist, else their copies in BATCHPILOT_LOGS_URL."""
    service = _service()
    if follow:
        _follow_logs(service, run_id, task=task, attempt=attempt, output=output)
        return
    with exit_codes(EXIT_INVALID):
        items = service.read_logs(run_id, task=task, attempt=attempt)
    if output is OutputFormat.json:
        print_json([item.to_dict() for item in items])
        return
    if not items:
        out.print("no attempts yet")
    for item in items:
        out.rule(f"{item.task_id} · attempt {item.attempt} · {item.state}")
        out.print(item.text.rstrip() or "(empty log)", markup=False)


def _follow_logs(
    service: RunService, run_id: str, *, task: str | None, attempt: int | None, output: OutputFormat
) -> None:
    """Print each attempt's log as it grows; JSON output is one object per piece."""
    with exit_codes(EXIT_INVALID):
        for item in service.follow_logs(run_id, task=task, attempt=attempt, warn=warn):
            if output is OutputFormat.json:
                sys.stdout.write(json.dumps(item.to_dict(), default=str) + "\n")
                sys.stdout.flush()
                continue
            if item.offset == 0:
                out.rule(f"{item.task_id} · attempt {item.attempt}")
            out.print(item.text, end="", markup=False)
            out.file.flush()


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
        print_json(items)
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
