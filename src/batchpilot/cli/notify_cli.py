"""``batchpilot notify list`` and ``batchpilot notify test CHANNEL``.

Translation only: the channels are read here, at the edge, from
``notifications.yaml`` in the home and ``BATCHPILOT_NOTIFY_<NAME>``
(:meth:`ChannelRegistry.from_sources`); :func:`batchpilot.notify.send_test_message`
sends. Every URL and error is printed with its secrets masked. Exit codes: 0 the
message was sent, 1 the send failed, 2 an unknown channel or a malformed URL.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from batchpilot.cli.errors import exit_codes
from batchpilot.cli.output import (
    EXIT_INVALID,
    EXIT_RUN_FAILED,
    OutputFormat,
    OutputOption,
    fail,
    out,
    print_json,
)
from batchpilot.notify import ChannelRegistry, send_test_message
from batchpilot.settings import Settings

notify_app = typer.Typer(
    help="Notification channels: email, Slack, Teams, webhooks.", no_args_is_help=True
)


def _channels() -> ChannelRegistry:
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
        return ChannelRegistry.from_sources(os.environ, settings.home)


@notify_app.command("list")
def notify_list(output: OutputOption = OutputFormat.text) -> None:
    """List notification channels, passwords and webhook secrets masked."""
    items = [
        {"name": c.name, "kind": c.kind, "url": c.masked_url, "source": c.origin}
        for c in _channels()
    ]
    if output is OutputFormat.json:
        print_json(items)
        return
    if not items:
        out.print(
            "no notification channels (define them in notifications.yaml in the home, "
            "or with BATCHPILOT_NOTIFY_<NAME>=<url>)",
            markup=False,
        )
        return
    table = Table("name", "kind", "url", "defined in")
    for item in items:
        table.add_row(item["name"], item["kind"], item["url"], item["source"])
    out.print(table)


@notify_app.command("test")
def notify_test(
    channel: Annotated[str, typer.Argument(help="channel name")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Send a test message to CHANNEL now (not through the outbox); exit 1 when the
    send fails, with the reason."""
    registry = _channels()
    with exit_codes(EXIT_INVALID):
        target = registry.get(channel)
    result = send_test_message(target)
    if output is OutputFormat.json:
        print_json(
            {
                "channel": result.channel,
                "kind": result.kind,
                "url": result.masked_url,
                "ok": result.ok,
                "error": result.error,
                "idempotency_key": result.idempotency_key,
            }
        )
        if not result.ok:
            raise typer.Exit(EXIT_RUN_FAILED)
        return
    if not result.ok:
        fail(f"test message not sent: {result.error}", EXIT_RUN_FAILED)  # names channel, URL
    out.print(
        f"ok: test message sent to channel '{result.channel}' ({result.masked_url})",
        markup=False,
    )
