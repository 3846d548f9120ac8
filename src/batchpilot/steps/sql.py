"""``sql``: run a script of SQL statements on a connection, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import sqlparse
from pydantic import Field, field_validator
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from batchpilot.connections import Connection
from batchpilot.errors import StepError
from batchpilot.spec.templating import SQL_FOR_SQLALCHEMY, BindParams
from batchpilot.steps._database import (
    cancel_on_stop,
    driver_message,
    first_line,
    open_connection,
)
from batchpilot.steps._sql_group import SqlGroupTransaction, committed_token
from batchpilot.steps.base import Step, StepConfig, StepContext, StepResult
from batchpilot.steps.transaction_group import GroupKey


@dataclass(frozen=True)
class Statement:
    """One statement of a script and the line it starts on (1-based)."""

    sql: str
    line: int


def split_script(script: str) -> list[Statement]:
    """Split ``script`` into statements, honouring quotes, dollar-quoting and comments.

    Statements holding only comments are dropped.
    """
    statements: list[Statement] = []
    position = 0
    for raw in sqlparse.split(script):
        found = script.find(raw, position)
        start = found if found >= 0 else position
        if found >= 0:
            position = found + len(raw)
        code = sqlparse.format(raw, strip_comments=True).strip().rstrip(";").strip()
        if not code:
            continue
        lead = _code_offset(raw)
        line = script.count("\n", 0, start + lead) + 1
        statements.append(Statement(sql=raw[lead:].strip(), line=line))
    return statements


def _code_offset(raw: str) -> int:
    """Where the statement's code starts, past the blanks and comments before it."""
    offset = 0
    for token in sqlparse.parse(raw)[0].flatten():
        if not (token.is_whitespace or token.ttype in sqlparse.tokens.Comment):
            return offset
        offset += len(token.value)
    return 0


class SqlConfig(StepConfig):
    connection: str
    sql: Annotated[str, SQL_FOR_SQLALCHEMY]
    params: Annotated[dict[str, Any], BindParams()] = Field(default_factory=dict)

    @field_validator("sql")
    @classmethod
    def _has_statements(cls, value: str) -> str:
        if not split_script(value):
            raise ValueError("the SQL script has no statement")
        return value


class SqlStep(Step[SqlConfig]):
    """Runs every statement of ``sql`` in one transaction: all of them commit, or none.

    ``params`` are bind parameters, written ``:name`` in the script. On a failure
    the transaction is rolled back and :class:`StepError` names the statement's
    number, its first line and the database's message. metadata: ``statements``
    (how many ran) and ``rowcounts`` (one per statement, -1 when unknown).

    Nodes of this type may join an atomic group (``transaction:``): the class
    implements :class:`~batchpilot.steps.transaction_group.TransactionGroupStep`.
    """

    type_name = "sql"
    Config = SqlConfig
    connection_fields = ("connection",)

    @classmethod
    def open_group_transaction(
        cls, connection: Connection, key: GroupKey, token: str
    ) -> SqlGroupTransaction:
        """Open an atomic group's transaction; see :class:`TransactionGroupStep`."""
        return SqlGroupTransaction.open(connection, key, token)

    @classmethod
    def committed_group_token(cls, connection: Connection, key: GroupKey) -> str | None:
        """Read an atomic group's commit record; see :class:`TransactionGroupStep`."""
        return committed_token(connection, key)

    def run(self, ctx: StepContext) -> StepResult:
        config = self.config
        connection = ctx.connections.get(config.connection)
        statements = split_script(config.sql)
        if ctx.transaction is not None:
            # A member of an atomic group: a savepoint inside the group's transaction,
            # which the engine commits after the group's last member.
            group = SqlGroupTransaction.of(ctx.transaction)
            cancel_on_stop(ctx, group.dbapi_connection, connection)
            with group.savepoint() as conn:
                rowcounts = self._execute(
                    ctx,
                    conn,
                    statements,
                    connection.name,
                    "its savepoint was rolled back",
                )
        else:
            with open_connection(ctx, connection) as conn, conn.begin():
                rowcounts = self._execute(
                    ctx, conn, statements, connection.name, "the script was rolled back"
                )
        affected = sum(c for c in rowcounts if c > 0)
        return StepResult(
            rows_out=affected,
            metadata={"statements": len(statements), "rowcounts": rowcounts},
        )

    def _execute(
        self, ctx: StepContext, conn: Any, statements: list[Statement], name: str, undone: str
    ) -> list[int]:
        config = self.config
        rowcounts: list[int] = []
        for number, statement in enumerate(statements, start=1):
            ctx.check_cancelled()
            clause = text(statement.sql)
            wanted = {k: v for k, v in config.params.items() if k in clause._bindparams}
            try:
                result = conn.execute(clause, wanted)
            except (DBAPIError, SQLAlchemyError) as exc:
                raise StepError(
                    ctx.connections.redact(
                        f"statement {number} of {len(statements)} (line {statement.line}: "
                        f"{first_line(statement.sql, limit=80)}) failed on "
                        f"'{name}': {driver_message(exc)}; {undone}"
                    )
                ) from exc
            rowcounts.append(result.rowcount if result.rowcount is not None else -1)
            ctx.log.info(
                "statement %d/%d done (%s rows): %s",
                number,
                len(statements),
                rowcounts[-1],
                first_line(statement.sql, limit=80),
            )
        return rowcounts


STEPS = (SqlStep,)
