"""``INSERT … ON CONFLICT`` for the store's two databases, SQLite and PostgreSQL: the one
place the store picks a dialect's ``insert`` (the outbox, the alert marks, the schedules)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from batchpilot.errors import StoreError


def dialect_insert(dialect: str, table: Table) -> Any:
    """An ``INSERT`` into ``table`` that can take ``ON CONFLICT`` clauses, for the
    database named ``dialect`` (``conn.dialect.name``); raises :class:`StoreError`
    for a database batchpilot does not store state in."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"the state store needs SQLite or PostgreSQL, not {dialect}")
