"""What the database steps share: engines, table names, one-line driver errors, Arrow types.

Private to ``batchpilot.steps``: the SQL steps (``extract.sql``, ``sql``,
``load.sql``, ``load.postgres``) build on it; nothing else should.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from batchpilot.connections import Connection, ConnectionRegistry
from batchpilot.errors import PermanentStepError, StepError
from batchpilot.steps.base import StepConfig, StepContext

#: the table, in the target database, where loads record (pipeline, run, task) once
LOADS_TABLE = "batchpilot_loads"

#: rows per INSERT round trip / per Arrow batch read from a database
CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class TableName:
    """A table name, optionally schema-qualified (``schema.table``)."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        """Split ``schema.table``; raises ``ValueError`` on an empty part or more than one dot."""
        parts = text.split(".")
        if len(parts) > 2 or not all(p.strip() for p in parts):
            raise ValueError(f"expected 'table' or 'schema.table', got {text!r}")
        if len(parts) == 2:
            return cls(schema=parts[0].strip(), name=parts[1].strip())
        return cls(schema=None, name=parts[0].strip())

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def create_transactional_engine(connection: Connection) -> Engine:
    """An engine for ``connection`` where every transaction, DDL included, is real.

    Python's sqlite3 module does not open a transaction before ``CREATE`` or
    ``DROP``, so a failed script would keep its DDL; here SQLite connections
    run in driver autocommit and SQLAlchemy emits ``BEGIN`` itself.
    """
    url = connection.sqlalchemy_url()
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        # A new SQLite target is a file in a folder that may not exist yet.
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_driver_transactions(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def open_connection(ctx: StepContext, connection: Connection) -> Iterator[Any]:
    """An open SQLAlchemy connection for a step: a connection failure becomes a
    one-line :class:`StepError` (no password), a stop cancels the statement on the
    server, and the engine is disposed at the end."""
    engine = create_transactional_engine(connection)
    try:
        try:
            conn = engine.connect()
        except OperationalError as exc:
            raise StepError(connection_failure(connection, ctx.connections, exc)) from exc
        cancel_on_stop(ctx, conn.connection.dbapi_connection, connection)
        with conn:
            yield conn
    finally:
        engine.dispose()


def driver_message(exc: BaseException) -> str:
    """The database's own message, first line only, without the SQL echo SQLAlchemy adds."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(orig) or type(orig).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def connection_failure(
    connection: Connection, registry: ConnectionRegistry, exc: BaseException
) -> str:
    """A one-line, password-free reason for not reaching ``connection``."""
    return registry.redact(
        f"cannot connect to '{connection.name}' ({connection.masked_url}): {driver_message(exc)}"
    )


def first_line(text: str, limit: int = 120) -> str:
    """The first non-blank line of ``text``, cut to ``limit`` characters."""
    for line in text.strip().splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def storage_type(arrow_type: pa.DataType) -> pa.DataType:
    """The type a column is stored as: dictionaries become their values, large types plain."""
    if pa.types.is_dictionary(arrow_type):
        return storage_type(arrow_type.value_type)
    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return pa.string()
    if pa.types.is_large_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return pa.binary()
    return arrow_type


class LoadConfig(StepConfig):
    """The config shared by ``load.postgres`` and ``load.sql``."""

    connection: str
    table: str
    mode: Literal["append", "replace", "upsert"] = "append"
    key: list[str] = Field(default_factory=list)
    create: bool = True
    #: ``mode: replace`` with an input of zero rows empties the table only when true
    allow_empty: bool = False

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        TableName.parse(value)
        return value

    @model_validator(mode="after")
    def _upsert_needs_key(self) -> LoadConfig:
        if self.mode == "upsert" and not self.key:
            raise ValueError("mode 'upsert' needs 'key': the column(s) that identify a row")
        if len(set(self.key)) != len(self.key):
            raise ValueError(f"key lists a column twice: {self.key}")
        return self

    @property
    def table_name(self) -> TableName:
        """The target table, split into schema and name."""
        return TableName.parse(self.table)


def refuse_empty_replace(config: LoadConfig, rows: int, task_id: str) -> None:
    """Raise :class:`PermanentStepError` if a ``replace`` would leave the table empty
    (``rows`` is 0) and the load does not say ``allow_empty: true``."""
    if config.mode == "replace" and rows == 0 and not config.allow_empty:
        raise PermanentStepError(
            f"task {task_id}: the input has 0 rows, so mode 'replace' would empty table "
            f"{config.table}; it was left as it was. Set 'allow_empty: true' on this load "
            "if an empty table is what you want"
        )


def check_load_columns(
    input_columns: list[str], table_columns: list[str] | None, config: LoadConfig
) -> None:
    """Raise :class:`PermanentStepError` if an input or key column has no place in the table.

    ``table_columns`` is None when the table does not exist yet.
    """
    missing_keys = [k for k in config.key if k not in input_columns]
    if missing_keys:
        raise PermanentStepError(
            f"key column(s) {', '.join(missing_keys)} not in the input "
            f"(input columns: {', '.join(input_columns)})"
        )
    if table_columns is None:
        if not config.create:
            raise PermanentStepError(
                f"table {config.table} does not exist and create is false; "
                "create it first or set create: true"
            )
        return
    existing = set(table_columns)
    for column in input_columns:
        if column not in existing:
            lower = {c.lower(): c for c in table_columns}
            hint = (
                f" (did you mean '{lower[column.lower()]}'? names are case-sensitive)"
                if column.lower() in lower
                else ""
            )
            raise PermanentStepError(
                f"input column '{column}' is not in table {config.table}{hint}; "
                f"the table has: {', '.join(table_columns)}"
            )


def cancel_on_stop(
    ctx: StepContext, dbapi_connection: Any, connection: Connection | None = None
) -> None:
    """Make a cancel or timeout of the attempt interrupt the statement running on the server.

    psycopg connections get a server-side cancel request, sqlite3 ones an interrupt; the
    interrupted statement fails, so the open transaction rolls back. A PostgreSQL session
    opened for ``connection`` is also recorded (see :func:`record_server_session`).
    """
    if connection is not None:
        record_server_session(ctx, dbapi_connection, connection.name)
    for method in ("cancel_safe", "cancel", "interrupt"):
        hook = getattr(dbapi_connection, method, None)
        if callable(hook):
            ctx.on_cancel(hook)
            return


def record_server_session(ctx: StepContext, dbapi_connection: Any, connection_name: str) -> None:
    """Record a psycopg connection's server backend (pid and start instant) with the
    engine, so the session can be ended on the server if this process dies mid-statement.
    Other drivers keep nothing on a server once their process is gone: nothing to do."""
    info = getattr(dbapi_connection, "info", None)
    pid = getattr(info, "backend_pid", None)
    if not isinstance(pid, int) or ctx.server_session_recorder is None:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(
            "SELECT backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is not None and row[0]:
        ctx.record_server_session(connection_name, pid, row[0])
