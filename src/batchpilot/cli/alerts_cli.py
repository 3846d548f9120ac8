"""``batchpilot alerts list`` and ``batchpilot alerts ack ID``.

Translation only: episodes are read and acknowledged through the store's
interface (``store.alerts``). Exit codes: 0 done, 2 an unknown alert id or a
bad setting.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from batchpilot.cli.errors import exit_codes
from batchpilot.cli.output import EXIT_INVALID, OutputFormat, OutputOption, out, print_json
from batchpilot.settings import Settings
from batchpilot.store import RunStore, utcnow
from batchpilot.store.alerts import AlertStore

alerts_app = typer.Typer(
    help="Alert episodes: what is wrong now, and what was.", no_args_is_help=True
)


def _alerts() -> AlertStore:
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
        return RunStore.for_home(settings.home, settings.database_url).alerts


@alerts_app.command("list")
def alerts_list(
    open_only: Annotated[bool, typer.Option("--open", help="only open episodes")] = False,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="only this pipeline's")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="how many, newest first")] = 100,
    output: OutputOption = OutputFormat.text,
) -> None:
    """List alert episodes, newest first: rule, state, the numbers that explain them."""
    alerts = _alerts()
    with exit_codes(EXIT_INVALID):
        records = alerts.list(open_only=open_only, pipeline=pipeline, limit=limit)
    if output is OutputFormat.json:
        print_json([record.to_dict() for record in records])
        return
    if not records:
        out.print("no open alerts" if open_only else "no alerts", markup=False)
        return
    table = Table("id", "pipeline", "rule", "task", "state", "opened", "resolved", "observed")
    for record in records:
        state = record.state.value
        if record.acknowledged_at is not None and state == "open":
            state = "open (acked)"
        table.add_row(
            str(record.alert_id),
            record.pipeline,
            record.rule,
            record.task or "-",
            state,
            f"{record.opened_at:%Y-%m-%d %H:%M}",
            f"{record.resolved_at:%Y-%m-%d %H:%M}" if record.resolved_at else "-",
            record.observed,
        )
    out.print(table)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(help="the alert's id (see: batchpilot alerts list)")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Acknowledge an alert: someone is on it, so no reminders (its recovery is still sent)."""
    alerts = _alerts()
    with exit_codes(EXIT_INVALID):
        record = alerts.acknowledge(alert_id, now=utcnow())
    if output is OutputFormat.json:
        print_json(record.to_dict())
        return
    out.print(
        f"alert {record.alert_id} ({record.pipeline}: {record.rule}) acknowledged", markup=False
    )
