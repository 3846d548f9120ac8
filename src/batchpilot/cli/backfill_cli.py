"""``batchpilot backfill NAME --start D --end D``, ``backfill cancel ID``, ``backfill list``.

Translation only: :mod:`batchpilot.scheduler.backfill_runner` (the window, resume)
and :mod:`batchpilot.scheduler.backfill_cancel` hold the rules. NAME is a
pipeline name under ``--pipelines DIR`` (as ``trigger`` reads it), or the path
of a pipeline file. ``cancel`` and ``list`` are subcommands; any other first
word is the pipeline (so a pipeline named ``cancel``, ``list`` or ``start`` is given by
its file path).
"""

from __future__ import annotations

import signal
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from batchpilot.cli.errors import exit_codes
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
)
from batchpilot.cli.serve_cli import PipelinesOption
from batchpilot.scheduler.backfill_cancel import cancel_backfill
from batchpilot.scheduler.backfill_plan import RerunPolicy, SlotAction
from batchpilot.scheduler.backfill_runner import (
    DEFAULT_CONCURRENCY,
    BackfillListener,
    BackfillReport,
    BackfillRequest,
    BackfillRunner,
    SlotOutcome,
    prepare_backfill,
)
from batchpilot.scheduler.catalog import PipelineCatalog, load_checked
from batchpilot.settings import Settings
from batchpilot.spec.durations import parse_duration
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore
from batchpilot.store.backfills import BackfillStore

_SUBCOMMANDS = ("cancel", "list")
_PIPELINE_SUFFIXES = (".yaml", ".yml", ".json", ".py")


class _BackfillGroup(TyperGroup):
    """``backfill NAME …`` runs the hidden ``start`` command; ``cancel``/``list`` are
    subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in (*_SUBCOMMANDS, "start", "--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


backfill_app = typer.Typer(
    cls=_BackfillGroup,
    no_args_is_help=True,
    help="Replay a range of dates: 'backfill NAME --start D --end D [OPTIONS]' runs one run "
    "per slot, --concurrency at once (the same as 'backfill start NAME …'; see "
    "'backfill start --help' for its options).",
)


def _settings_and_store() -> tuple[Settings, RunStore]:
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
        return settings, RunStore.for_home(settings.home, settings.database_url)


def _pipeline(name: str, pipelines: Path | None, settings: Settings) -> PipelineSpec:
    path = Path(name)
    with exit_codes(EXIT_INVALID):
        if path.suffix in _PIPELINE_SUFFIXES and path.is_file():
            return load_checked(path, settings)
        if pipelines is None:
            fail(
                f"'{name}' is not a pipeline file: give one, or the pipelines folder "
                "(--pipelines DIR or BATCHPILOT_PIPELINES) to find it by name"
            )
        catalog = PipelineCatalog(pipelines, settings=settings)
        catalog.refresh()
        return catalog.get(name)


def _bound(option: str, text: str) -> date | datetime:
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    fail(f"{option} takes a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM), got {text!r}")


def _every(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text, maximum=366 * 86400)
    except ValueError as exc:
        fail(f"--every: {exc}")
    if seconds <= 0:
        fail(f"--every must be longer than zero, got {text!r}")
    return timedelta(seconds=seconds)


@backfill_app.command("start")
def start(
    name: Annotated[str, typer.Argument(help="pipeline name (under --pipelines) or file path")],
    start_text: Annotated[str, typer.Option("--start", help="first date (inclusive)")],
    end_text: Annotated[str, typer.Option("--end", help="last date (inclusive)")],
    pipelines: PipelinesOption = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="step between slots (e.g. 1d, 6h) instead "
            "of the schedule; needed when the pipeline has none",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="runs at once (a sliding window)")
    ] = DEFAULT_CONCURRENCY,
    reverse: Annotated[bool, typer.Option("--reverse", help="newest slot first")] = False,
    rerun: Annotated[
        RerunPolicy,
        typer.Option("--rerun", help="slots that ran before: failed (default), all, none"),
    ] = RerunPolicy.failed,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the slots and what would happen; run nothing")
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Run the pipeline once per slot from --start to --end, --concurrency at once; run the
    same command again after an interruption to continue."""
    request_bounds = (_bound("--start", start_text), _bound("--end", end_text))
    step = _every(every)
    settings, store = _settings_and_store()
    spec = _pipeline(name, pipelines, settings)
    request = BackfillRequest(
        spec,
        *request_bounds,
        every=step,
        every_text=every,
        concurrency=concurrency,
        reverse=reverse,
        rerun=rerun,
    )
    with exit_codes(EXIT_INVALID):
        preview = prepare_backfill(request, settings=settings, store=store)
    if dry_run:
        _print_dry_run(spec.name, preview.plans, output)
        return
    listener = _progress(output)
    runner = BackfillRunner(preview, settings=settings, store=store, listener=listener)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = runner.run()
    except KeyboardInterrupt:
        listener.close()
        started = listener.report
        which = f"backfill {started.record.backfill_id}" if started else "the backfill"
        fail(
            f"interrupted: {which} is left resumable; run the same command again to continue",
            EXIT_RUN_FAILED,
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        store.dispose()
    listener.close()
    _print_report(report, output)
    raise typer.Exit(EXIT_OK if report.all_succeeded else EXIT_RUN_FAILED)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@backfill_app.command("cancel")
def cancel(
    backfill_id: Annotated[str, typer.Argument(help="backfill id (or a unique prefix)")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Stop a backfill: no new run; its running runs stop, its queued ones are cancelled."""
    settings, store = _settings_and_store()
    with exit_codes(EXIT_INVALID):
        report = cancel_backfill(backfill_id, settings=settings, store=store)
    store.dispose()
    if output is OutputFormat.json:
        print_json(
            {
                "backfill_id": report.record.backfill_id,
                "status": "cancelled",
                "stopped": report.stopped,
                "cancelled_queued": report.dequeued,
            }
        )
        return
    out.print(
        f"cancelled backfill {report.record.backfill_id}: {len(report.stopped)} running runs "
        f"stopped, {len(report.dequeued)} queued runs cancelled",
        markup=False,
    )


@backfill_app.command("list")
def list_backfills(
    limit: Annotated[int, typer.Option("--limit", min=1, help="how many, newest first")] = 20,
    output: OutputOption = OutputFormat.text,
) -> None:
    """The newest backfills: id, pipeline, range, status."""
    _, store = _settings_and_store()
    records = BackfillStore(store.engine).list(limit=limit)
    store.dispose()
    rows = [
        {
            "backfill_id": r.backfill_id,
            "pipeline": r.pipeline,
            "start": r.range_start,
            "end": r.range_end,
            "every": r.every,
            "slots": r.slot_count,
            "status": r.status.value,
            "options": r.options,
            "created_at": r.created_at.isoformat(),
        }
        for r in records
    ]
    if output is OutputFormat.json:
        print_json(rows)
        return
    table = Table("backfill", "pipeline", "range", "slots", "status", "created")
    for row in rows:
        table.add_row(
            row["backfill_id"],
            row["pipeline"],
            f"{row['start']} … {row['end']}",
            str(row["slots"]),
            row["status"],
            row["created_at"][:19],
        )
    out.print(table)


# -- printing ---------------------------------------------------------------------------------


def _print_dry_run(pipeline: str, plans: list[Any], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json(
            {
                "pipeline": pipeline,
                "dry_run": True,
                "slots": [
                    {
                        "slot": p.slot.at.isoformat(),
                        "ds": p.slot.ds,
                        "action": p.action.value,
                        "run_id": p.run_id,
                        "status": p.status.value if p.status else None,
                    }
                    for p in plans
                ],
            }
        )
        return
    table = Table("slot", "ds", "would", "because", title=f"backfill of {pipeline} (dry run)")
    for plan in plans:
        table.add_row(
            f"{plan.slot.local:%Y-%m-%d %H:%M %Z}", plan.slot.ds, plan.action.value, plan.reason
        )
    out.print(table)
    counts = {a: sum(p.action is a for p in plans) for a in SlotAction}
    out.print(
        ", ".join(f"{n} {a.value}" for a, n in counts.items() if n) + "; nothing was run",
        markup=False,
    )


def _print_report(report: BackfillReport, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json(report.to_dict())
        return
    record = report.record
    table = Table(
        "slot", "ds", "run", "status", title=f"backfill {record.backfill_id} of {record.pipeline}"
    )
    for outcome in report.outcomes:
        status = outcome.status.value if outcome.status else "not run"
        if outcome.plan.action is SlotAction.SKIP:
            status += " (before)"
        table.add_row(
            f"{outcome.slot.local:%Y-%m-%d %H:%M %Z}",
            outcome.slot.ds,
            outcome.run_id or "-",
            status,
        )
    out.print(table)
    out.print(_counts_text(report) + f" — backfill {report.outcome.value}", markup=False)


def _counts_text(report: BackfillReport) -> str:
    counts = report.counts()
    return (
        f"{counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled, {counts['left']} not run "
        f"(of {counts['total']} slots; {counts['skipped']} skipped as run before)"
    )


class _Progress(BackfillListener):
    """One line per run end on stderr (not a terminal, or JSON output)."""

    def __init__(self) -> None:
        self.report: BackfillReport | None = None
        self.began = time.monotonic()
        self.ended = 0

    def backfill_started(self, report: BackfillReport) -> None:
        self.report = report
        record = report.record
        word = "continuing" if report.continued else "starting"
        err.print(
            f"{word} backfill {record.backfill_id} of {record.pipeline}: "
            f"{len(report.outcomes)} slots",
            markup=False,
        )

    def run_ended(self, outcome: SlotOutcome) -> None:
        self.ended += 1
        status = outcome.status.value if outcome.status else "not run"
        err.print(f"{outcome.slot.ds} run {outcome.run_id} {status}", markup=False)

    def close(self) -> None:
        """Stop drawing (the live display)."""


class _LiveProgress(_Progress):
    """A status line redrawn in place on a terminal: done / running / failed / left, ETA."""

    def __init__(self) -> None:
        super().__init__()
        self._live = Live(Text(""), console=err, refresh_per_second=4, transient=True)

    def backfill_started(self, report: BackfillReport) -> None:
        super().backfill_started(report)
        self._live.start()

    def run_ended(self, outcome: SlotOutcome) -> None:
        self.ended += 1
        if outcome.status is not None and outcome.status.value != "success":
            self._live.console.print(
                f"{outcome.slot.ds} run {outcome.run_id} {outcome.status.value}", markup=False
            )

    def waiting(self, report: BackfillReport) -> None:
        counts = report.counts()
        left = counts["left"]
        elapsed = time.monotonic() - self.began
        eta = f"{left * elapsed / self.ended:.0f}s" if self.ended else "?"
        self._live.update(
            Text(
                f"backfill {report.record.backfill_id}: {counts['succeeded']} done · "
                f"{counts['running']} running · {counts['failed']} failed · {left} left · ETA {eta}"
            )
        )

    def close(self) -> None:
        self._live.stop()


def _progress(output: OutputFormat) -> _Progress:
    if output is OutputFormat.text and err.is_terminal:
        return _LiveProgress()
    return _Progress()
