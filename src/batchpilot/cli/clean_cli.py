"""``batchpilot clean``: delete ended runs older than an age, their rows, logs and artifacts.

Translation only: :func:`batchpilot.monitor.retention.clean_runs` decides and
deletes. Exit codes: 0 done (or nothing to delete), 1 a run's files could not
be deleted (the runs before it are deleted; clean again once fixed), 2 a bad
option (``--older-than 30x``) or an unusable store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from batchpilot.cli.errors import exit_codes
from batchpilot.cli.output import (
    EXIT_INVALID,
    OutputFormat,
    OutputOption,
    fail,
    out,
    print_json,
)
from batchpilot.home_settings import SETTINGS_FILE
from batchpilot.monitor.retention import (
    CleanupReport,
    RetentionPolicy,
    clean_runs,
    default_deleters,
)
from batchpilot.settings import RETENTION_VARIABLE, Settings
from batchpilot.spec.durations import parse_age
from batchpilot.store import RunStore, utcnow

#: how many run ids the text output lists
LISTED_RUNS = 20


def clean(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help=(
                f"age of the ended runs to delete, e.g. 30d, 12h (default: {RETENTION_VARIABLE}"
                f", else retention.older_than in the home's {SETTINGS_FILE})"
            ),
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            "--keep-last",
            min=0,
            help="keep each pipeline's N most recent ended runs (default: retention.keep_last "
            "in the home's settings.yaml, else 0)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only count what would be deleted")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="also delete queued, running and needs-attention runs"),
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Delete ended runs older than --older-than: their rows in the state store, their
    logs and artifacts. Runs queued, running or needing attention are kept unless --force."""
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
    if older_than is not None:
        try:
            age_s = parse_age(older_than)
        except ValueError as exc:
            fail(f"--older-than: {exc}")
    elif settings.retention_s is not None:
        age_s = settings.retention_s
    else:
        fail(
            f"give --older-than (e.g. 30d), or set {RETENTION_VARIABLE} or retention.older_than "
            f"in {settings.home / SETTINGS_FILE}"
        )
    if keep_last is None:
        keep_last = settings.retention_keep_last
    policy = RetentionPolicy(timedelta(seconds=age_s), keep_last=keep_last, force=force)
    with exit_codes(EXIT_INVALID):
        store = RunStore.for_home(settings.home, settings.database_url)
    try:
        with exit_codes(EXIT_INVALID):  # a RetentionError: exit 1 (cli/errors.py)
            report = clean_runs(
                store,
                policy,
                deleters=default_deleters(settings),
                now=utcnow(),
                dry_run=dry_run,
            )
    finally:
        store.dispose()
    if output is OutputFormat.json:
        print_json(report.to_dict())
        return
    _render(report)


def _render(report: CleanupReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    if not report.runs:
        out.print(f"nothing to delete: no run ended before {report.cutoff:%Y-%m-%d %H:%M} UTC")
    else:
        rows = ", ".join(f"{n} {name}" for name, n in report.rows.to_dict().items() if n)
        files = "; ".join(
            f"{name} files: {c.files} ({_size(c.bytes)})" for name, c in report.files.items()
        )
        out.print(
            f"{verb} {len(report.runs)} runs ended before {report.cutoff:%Y-%m-%d %H:%M} UTC",
            markup=False,
        )
        out.print(f"  rows: {rows}", markup=False)
        out.print(f"  {files}", markup=False)
        for run in report.runs[:LISTED_RUNS]:
            out.print(f"  {run.run_id}  {run.pipeline}  {run.status.value}", markup=False)
        if len(report.runs) > LISTED_RUNS:
            out.print(f"  ... and {len(report.runs) - LISTED_RUNS} more", markup=False)
    if report.skipped:
        out.print(
            f"left alone (retried, flagged or deleted meanwhile): {', '.join(report.skipped)}",
            markup=False,
        )


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
