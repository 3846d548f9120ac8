"""``batchpilot serve``, ``pipelines list``, ``pause``, ``unpause`` and ``trigger``.

Translation only: the scheduler (:mod:`batchpilot.scheduler`) and the engine's
services hold the rules; errors go through :mod:`batchpilot.cli.errors`.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from batchpilot.cli.errors import exit_codes
from batchpilot.cli.output import (
    EXIT_INVALID,
    OutputFormat,
    OutputOption,
    err,
    fail,
    out,
    print_json,
)
from batchpilot.clock import SystemClock
from batchpilot.engine import RunService, new_run_id
from batchpilot.errors import SpecErrors
from batchpilot.scheduler.catalog import PipelineCatalog, snapshot_path
from batchpilot.scheduler.components import DeadRunPolicy, ServeContext, ServeOptions
from batchpilot.scheduler.describe import pipeline_rows
from batchpilot.scheduler.supervisor import DEFAULT_MAX_RUNS
from batchpilot.scheduler.warm_workers import start_fork_server
from batchpilot.settings import DEFAULT_SERVE_HOST as DEFAULT_HOST
from batchpilot.settings import DEFAULT_SERVE_PORT as DEFAULT_PORT
from batchpilot.settings import Settings
from batchpilot.spec.dates import parse_logical_date
from batchpilot.spec.monitoring import check_routes
from batchpilot.store import RunStore

if TYPE_CHECKING:
    from batchpilot.notify import ChannelRegistry

pipelines_app = typer.Typer(help="The pipelines serve schedules.", no_args_is_help=True)

PipelinesOption = Annotated[
    Path | None,
    typer.Option(
        "--pipelines",
        envvar="BATCHPILOT_PIPELINES",
        help="folder of pipeline files (or BATCHPILOT_PIPELINES)",
    ),
]


def _settings_and_store() -> tuple[Settings, RunStore]:
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
        return settings, RunStore.for_home(settings.home, settings.database_url)


def _folder(pipelines: Path | None) -> Path:
    if pipelines is None:
        fail("name the pipelines folder: --pipelines DIR (or set BATCHPILOT_PIPELINES)")
    return pipelines


def _catalog(folder: Path, settings: Settings) -> PipelineCatalog:
    catalog = PipelineCatalog(folder, settings=settings)
    catalog.seed_from_snapshot(snapshot_path(settings))
    with exit_codes(EXIT_INVALID):
        catalog.refresh()
    return catalog


def _say(message: str) -> None:
    err.print(f"{datetime.now():%H:%M:%S} {message}", markup=False)


def _check_all_routes(folder: Path, settings: Settings, channels: ChannelRegistry) -> None:
    """Raise :class:`SpecErrors` for every ``notify:`` route naming an undefined channel."""
    catalog = PipelineCatalog(folder, settings=settings)
    catalog.refresh()
    problems = []
    for spec in catalog.specs():
        try:
            check_routes(spec.notify, channels, path=spec.source_path)
        except SpecErrors as exc:
            problems += exc.errors
    if problems:
        raise SpecErrors(problems)


def serve(
    pipelines: PipelinesOption = None,
    max_runs: Annotated[
        int, typer.Option("--max-runs", min=1, help="runs at once; the rest wait queued")
    ] = DEFAULT_MAX_RUNS,
    on_dead_runs: Annotated[
        DeadRunPolicy,
        typer.Option(
            "--on-dead-runs",
            envvar="BATCHPILOT_ON_DEAD_RUNS",
            help="runs whose process died: resume them, or reap them (failed, resumable)",
        ),
    ] = DeadRunPolicy.RESUME,
    host: Annotated[
        str, typer.Option("--host", envvar="BATCHPILOT_API_HOST", help="address of the REST API")
    ] = DEFAULT_HOST,
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, envvar="BATCHPILOT_API_PORT", help="port of the REST API"
        ),
    ] = DEFAULT_PORT,
    no_scheduler: Annotated[
        bool,
        typer.Option(
            "--no-scheduler",
            help="API only: fire no schedules or triggers (queued runs still execute)",
        ),
    ] = False,
    cors_origin: Annotated[
        list[str],
        typer.Option(
            "--cors-origin",
            envvar="BATCHPILOT_API_CORS_ORIGINS",
            help="a browser origin allowed to call the API (repeatable); none by default",
        ),
    ] = [],  # noqa: B006 - typer reads the default
) -> None:
    """Run the pipelines under DIR on their schedules, and the runs queued by 'trigger' or
    the REST API, each in its own worker process, and serve the REST API on --host/--port,
    until Ctrl-C or SIGTERM."""
    folder = _folder(pipelines)
    if not folder.is_dir():  # before the port is taken
        fail(f"the pipelines folder {folder} does not exist")
    # the workers' fork server imports the engine (a second or two) while serve starts
    start_fork_server()
    # the monitor, notifications and serve's own parts load here, not at import: every
    # other command starts without them (Jinja2 among them)
    from batchpilot.monitor.serve_loop import MonitorLoop
    from batchpilot.notify import ChannelRegistry
    from batchpilot.scheduler.commands import CommandSupervisor
    from batchpilot.scheduler.serve import ServeProcess

    settings, store = _settings_and_store()
    with exit_codes(EXIT_INVALID):
        channels = ChannelRegistry.from_sources(os.environ, settings.home)
        _check_all_routes(folder, settings, channels)
    context = ServeContext(settings=settings, store=store, clock=SystemClock(), say=_say)
    options = ServeOptions(
        pipelines=folder,
        max_runs=max_runs,
        on_dead_runs=on_dead_runs,
        scheduling=not no_scheduler,
    )
    monitor = MonitorLoop(
        store,
        channels,
        context.clock,
        context.stopping,
        say=_say,
        pipelines=lambda: process.scheduler.pipelines,
        runs_ended=context.runs_ended,
    )
    commands = CommandSupervisor(settings)
    # FastAPI and uvicorn too
    from batchpilot.api import ApiServer
    from batchpilot.web import serve_web_app

    with exit_codes(EXIT_INVALID):
        app = serve_web_app(
            context,
            entries=lambda: process.scheduler.entries,
            scheduling=not no_scheduler,
            commands=commands,
            cors_origins=cors_origin,
        )
        api = ApiServer(app, host=host, port=port)
    process = ServeProcess(options, context, extra_components=[monitor, commands, api])

    def stop(signum: int, frame: Any) -> None:
        context.stopping.set()

    try:
        with exit_codes(EXIT_INVALID):
            process.start()
    except BaseException:
        api.close()
        raise
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    mode = "scheduling" if options.scheduling else "not scheduling (--no-scheduler)"
    _say(
        f"serving {folder} ({len(process.scheduler.pipelines)} pipelines, {max_runs} runs at "
        f"once, {mode}); API on http://{host}:{api.port}/api/v1"
    )
    while not context.stopping.wait(0.5):
        pass
    _say("stopping: no new runs; running ones are stopped and left resumable")
    process.stop()
    store.dispose()
    _say("stopped")


@pipelines_app.command("list")
def pipelines_list(
    pipelines: PipelinesOption = None, output: OutputOption = OutputFormat.text
) -> None:
    """Each pipeline: schedule in words, time zone, next run (local time), last run and its
    status, paused, file errors."""
    settings, store = _settings_and_store()
    catalog = _catalog(_folder(pipelines), settings)
    with exit_codes(EXIT_INVALID):
        rows = pipeline_rows(catalog.entries(), store, SystemClock().now())
    if output is OutputFormat.json:
        print_json([row.to_dict() for row in rows])
        return
    table = Table("pipeline", "schedule", "time zone", "next run", "last run", "paused", "errors")
    for row in rows:
        table.add_row(
            row.name,
            row.schedule or "-",
            row.timezone or "-",
            f"{row.next_run:%Y-%m-%d %H:%M %Z}" if row.next_run else "-",
            f"{row.last_run_id} {row.last_status}" if row.last_run_id else "-",
            f"yes ({row.paused_reason})" if row.paused_reason else ("yes" if row.paused else "no"),
            row.error or "",
        )
    out.print(table)


def _set_paused(name: str, pipelines: Path | None, paused: bool) -> None:
    settings, store = _settings_and_store()
    if pipelines is not None:
        with exit_codes(EXIT_INVALID):
            _catalog(pipelines, settings).get(name)
    elif name not in {s.pipeline for s in store.schedules.schedule_states()} and not (
        store.list_runs(limit=1, pipeline=name)
    ):
        fail(f"no schedule or run of a pipeline named '{name}' (pass --pipelines DIR)")
    state = store.schedules.set_paused(name, paused, reason="paused by hand" if paused else None)
    word = "paused" if state.paused else "unpaused (missed slots follow its catchup policy)"
    out.print(f"{name}: {word}", markup=False)


def pause(
    name: Annotated[str, typer.Argument(help="pipeline name")],
    pipelines: PipelinesOption = None,
) -> None:
    """Stop scheduling a pipeline (runs already queued or running go on)."""
    _set_paused(name, pipelines, True)


def unpause(
    name: Annotated[str, typer.Argument(help="pipeline name")],
    pipelines: PipelinesOption = None,
) -> None:
    """Schedule a pipeline again; the slots it missed while paused follow its catchup."""
    _set_paused(name, pipelines, False)


def trigger(
    name: Annotated[str, typer.Argument(help="pipeline name")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="KEY=VALUE, repeatable")] = [],  # noqa: B006 - typer reads the default
    date: Annotated[
        str | None, typer.Option("--date", help="logical date ({{ ds }}), YYYY-MM-DD")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="the same key returns the same run, once"),
    ] = None,
    pipelines: PipelinesOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Queue a run for serve to execute; prints its run id."""
    from batchpilot.cli.app import _parse_params  # the one --param parser; app imports us

    params = _parse_params(param)  # ParamText values, typed and checked by service.queue
    with exit_codes(EXIT_INVALID):
        ds = parse_logical_date(date) if date is not None else None
    settings, store = _settings_and_store()
    catalog = _catalog(_folder(pipelines), settings)
    service = RunService(settings=settings, store=store)
    with exit_codes(EXIT_INVALID):
        spec = catalog.get(name)
        if ds is None:
            zone = spec.schedule.zone if spec.schedule else None
            ds = datetime.now(zone).date().isoformat()
        claim = service.queue(
            spec, run_id=new_run_id(), ds=ds, params=params, idempotency_key=idempotency_key
        )
    if output is OutputFormat.json:
        print_json({"run_id": claim.run_id, "pipeline": name, "created": claim.created})
        return
    if claim.created:
        out.print(f"queued run {claim.run_id} of {name} (serve runs it)", markup=False)
    else:
        out.print(f"run {claim.run_id} was already queued with this key", markup=False)
