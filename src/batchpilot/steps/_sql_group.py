"""An atomic group's transaction on a SQLAlchemy connection, and its commit record.

Private to ``batchpilot.steps``: the ``sql`` step implements
:class:`~batchpilot.steps.transaction_group.TransactionGroupStep` with it.

The commit writes a row of ``batchpilot_transactions`` in the same transaction
as the members' work, so the row exists if and only if the group committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, func, insert, select, update
from sqlalchemy import Connection as SqlConnection
from sqlalchemy.engine import Engine, RootTransaction
from sqlalchemy.exc import SQLAlchemyError

from batchpilot.connections import Connection
from batchpilot.errors import StepError
from batchpilot.steps._database import create_transactional_engine, driver_message
from batchpilot.steps.transaction_group import GroupKey

#: the table, in the target database, where a group's commit is recorded
MARKER_TABLE = "batchpilot_transactions"
_markers = Table(
    MARKER_TABLE,
    MetaData(),
    Column("pipeline", String(200), primary_key=True),
    Column("run_id", String(100), primary_key=True),
    Column("group_name", String(200), primary_key=True),
    Column("token", String(300), nullable=False),
    Column("committed_at", DateTime(timezone=True), server_default=func.now()),
)


class SqlGroupTransaction:
    """One open SQLAlchemy transaction shared by an atomic group's members.

    Members run inside :meth:`savepoint`, so a member's retry starts clean
    without undoing its predecessors.
    """

    def __init__(
        self,
        engine: Engine,
        connection: SqlConnection,
        transaction: RootTransaction,
        key: GroupKey,
        token: str,
    ) -> None:
        self._engine = engine
        self._transaction = transaction
        #: the group's open SQLAlchemy connection
        self.connection = connection
        #: what :meth:`commit` records
        self.key = key
        self.token = token

    @classmethod
    def open(cls, connection: Connection, key: GroupKey, token: str) -> SqlGroupTransaction:
        """Connect and begin; raises :class:`StepError` if the database is unreachable."""
        engine = create_transactional_engine(connection)
        try:
            conn = engine.connect()
            transaction = conn.begin()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StepError(
                f"cannot open transaction group '{key.group}' on "
                f"'{connection.name}': {driver_message(exc)}"
            ) from exc
        return cls(engine, conn, transaction, key, token)

    @classmethod
    def of(cls, transaction: object) -> SqlGroupTransaction:
        """``transaction`` as this class; raises :class:`StepError` if another step type
        opened it (a group's members share one kind of transaction)."""
        if not isinstance(transaction, cls):
            raise StepError(
                f"this step works in a SQL transaction, but its group's transaction is a "
                f"{type(transaction).__name__}; put only steps of one type in a group"
            )
        return transaction

    @property
    def dbapi_connection(self) -> Any:
        """The driver's connection, for cancelling a statement from another thread."""
        return self.connection.connection.dbapi_connection

    @contextmanager
    def savepoint(self) -> Iterator[SqlConnection]:
        """A savepoint for one member's attempt: released on success, rolled back on error."""
        with self.connection.begin_nested():
            yield self.connection

    def commit(self) -> None:
        """Record the group's commit, then commit; raises :class:`StepError` if that fails."""
        conn = self.connection
        try:
            _markers.create(conn, checkfirst=True)
            found = conn.execute(select(_markers.c.token).where(*_key_clause(self.key))).first()
            if found is None:
                conn.execute(
                    insert(_markers).values(
                        pipeline=self.key.pipeline,
                        run_id=self.key.run_id,
                        group_name=self.key.group,
                        token=self.token,
                    )
                )
            else:
                conn.execute(
                    update(_markers).where(*_key_clause(self.key)).values(token=self.token)
                )
            self._transaction.commit()
        except SQLAlchemyError as exc:
            raise StepError(
                f"commit of transaction group '{self.key.group}' failed: {driver_message(exc)}"
            ) from exc
        finally:
            self._close()

    def rollback(self) -> None:
        """Roll the transaction back (nothing of the members remains); never raises."""
        try:
            self._transaction.rollback()
        except SQLAlchemyError:
            pass  # a dead connection has rolled back already
        finally:
            self._close()

    def _close(self) -> None:
        self.connection.close()
        self._engine.dispose()


def committed_token(connection: Connection, key: GroupKey) -> str | None:
    """The token of the group's last commit in its run, read from the target database.

    Raises :class:`StepError` if the database cannot be read.
    """
    engine = create_transactional_engine(connection)
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, MARKER_TABLE):
                return None
            token: str | None = conn.execute(
                select(_markers.c.token).where(*_key_clause(key))
            ).scalar()
            return token
    except SQLAlchemyError as exc:
        raise StepError(
            f"cannot read the commit record of transaction group "
            f"'{key.group}': {driver_message(exc)}"
        ) from exc
    finally:
        engine.dispose()


def _key_clause(key: GroupKey) -> tuple[Any, ...]:
    return (
        _markers.c.pipeline == key.pipeline,
        _markers.c.run_id == key.run_id,
        _markers.c.group_name == key.group,
    )
