"""``batchpilot connections list`` and ``batchpilot connections test NAME``.

Translation only: connections are read at the edge (:meth:`Settings.from_env`:
``BATCHPILOT_CONN_<NAME>`` and ``connections.yaml`` in the home), checked by
:meth:`Connection.check` and reached by the engine's :func:`check_connection`.
URLs are printed with their passwords masked.
"""

from __future__ import annotations

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
from batchpilot.connections import Connection
from batchpilot.engine import check_connection
from batchpilot.errors import ConnectionError
from batchpilot.settings import Settings

connections_app = typer.Typer(help="Named database connections.", no_args_is_help=True)


def _settings() -> Settings:
    with exit_codes(EXIT_INVALID):
        return Settings.from_env()


@connections_app.command("list")
def connections_list(output: OutputOption = OutputFormat.text) -> None:
    """List named connections, passwords masked."""
    registry = _settings().connections
    items = [{"name": c.name, "url": c.masked_url, "source": c.origin} for c in registry]
    if output is OutputFormat.json:
        print_json(items)
    else:
        table = Table("name", "url", "defined in")
        for item in items:
            table.add_row(item["name"], item["url"], item["source"])
        out.print(table)
    invalid = [str(exc) for c in registry if (exc := _connection_problem(c))]
    if invalid:
        fail("\n".join(invalid))


def _connection_problem(connection: Connection) -> ConnectionError | None:
    try:
        connection.check()
    except ConnectionError as exc:
        return exc
    return None


@connections_app.command("test")
def connections_test(name: Annotated[str, typer.Argument(help="connection name")]) -> None:
    """Connect and run ``SELECT 1``; exit 1 when the database cannot be reached."""
    settings = _settings()
    with exit_codes(EXIT_INVALID):
        check = check_connection(name, settings=settings)
    if not check.ok:
        fail(f"connection '{name}' ({check.masked_url}) failed: {check.reason}", EXIT_RUN_FAILED)
    out.print(f"ok: connection '{name}' ({check.masked_url}) answered", markup=False)
