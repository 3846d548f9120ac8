"""``batchpilot tokens create|list|revoke``: the API's bearer tokens.

Translation only: :mod:`batchpilot.store.tokens` holds the rules. A secret is
printed once, by ``create``; nothing else ever shows more than its first
characters (``hint``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from batchpilot.cli.errors import exit_codes
from batchpilot.cli.output import EXIT_INVALID, OutputFormat, OutputOption, err, out, print_json
from batchpilot.settings import Settings
from batchpilot.spec.durations import parse_duration
from batchpilot.store import RunStore
from batchpilot.store.records import utcnow
from batchpilot.store.tokens import TokenRecord, TokenStore, parse_scope

#: the longest expiry ``--expires`` accepts
MAX_EXPIRY_DAYS = 3650

tokens_app = typer.Typer(
    help="Bearer tokens for the REST API and the dashboard.", no_args_is_help=True
)


def _tokens() -> TokenStore:
    with exit_codes(EXIT_INVALID):
        settings = Settings.from_env()
        return RunStore.for_home(settings.home, settings.database_url).tokens


def _expiry(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value, maximum=MAX_EXPIRY_DAYS * 86400.0)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} (e.g. 90d, 12h)", param_hint="--expires") from None
    if seconds <= 0:
        raise typer.BadParameter(f"{value!r} is not in the future", param_hint="--expires")
    return timedelta(seconds=seconds)


def _as_json(token: TokenRecord) -> dict[str, Any]:
    def instant(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "name": token.name,
        "scope": token.scope.value,
        "state": token.state(utcnow()),
        "hint": token.hint,
        "created_at": instant(token.created_at),
        "expires_at": instant(token.expires_at),
        "revoked_at": instant(token.revoked_at),
        "last_used_at": instant(token.last_used_at),
    }


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="a name for the token (who or what uses it)")],
    scope: Annotated[str, typer.Option("--scope", help="read, run or admin")] = "read",
    expires: Annotated[
        str | None, typer.Option("--expires", help="lifetime, e.g. 90d (default: never)")
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Create a token and print its secret, once: the store keeps only a hash."""
    lifetime = _expiry(expires)
    tokens = _tokens()
    with exit_codes(EXIT_INVALID):
        record, secret = tokens.create(name, parse_scope(scope), expires_in=lifetime)
    if output is OutputFormat.json:
        print_json({**_as_json(record), "token": secret})
        return
    out.print(secret, markup=False)
    until = f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
    err.print(
        f"token '{name}' (scope {record.scope.value}{until}) created; it is shown only now: "
        "send it as 'Authorization: Bearer <token>'",
        markup=False,
    )


@tokens_app.command("list")
def tokens_list(output: OutputOption = OutputFormat.text) -> None:
    """List tokens (names, scopes, states; never their secrets)."""
    items = [_as_json(t) for t in _tokens().list()]
    if output is OutputFormat.json:
        print_json(items)
        return
    if not items:
        out.print("no tokens (create one with: batchpilot tokens create NAME --scope read)")
        return
    table = Table("name", "scope", "state", "starts with", "created", "expires", "last used")
    for item in items:
        table.add_row(
            item["name"],
            item["scope"],
            item["state"],
            item["hint"] + "…",
            (item["created_at"] or "")[:16],
            (item["expires_at"] or "never")[:16],
            (item["last_used_at"] or "never")[:16],
        )
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="the token's name")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Revoke a token: the next request with it is refused (runs it started go on)."""
    tokens = _tokens()
    with exit_codes(EXIT_INVALID):
        record = tokens.revoke(name)
    if output is OutputFormat.json:
        print_json(_as_json(record))
        return
    out.print(f"token '{name}' revoked", markup=False)
