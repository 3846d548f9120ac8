"""Opaque page cursors of ``GET /executions``: the store's :class:`RunCursor` (the last
run's ``created_at`` and ``run_id``), the same cursors the dashboard's run list uses."""

from __future__ import annotations

from batchpilot.errors import SpecError
from batchpilot.store.run_queries import InvalidCursor, RunCursor


def encode_cursor(cursor: RunCursor) -> str:
    """The text a client passes back for the page after ``cursor``."""
    return cursor.encode()


def decode_cursor(text: str) -> RunCursor:
    """The cursor in ``text``; raises :class:`SpecError` (field ``cursor``) for one this
    server did not make."""
    try:
        return RunCursor.decode(text)
    except InvalidCursor:
        raise SpecError(
            "'cursor' is not a cursor this server returned; start again without it",
            field="cursor",
        ) from None


__all__ = ["decode_cursor", "encode_cursor"]
