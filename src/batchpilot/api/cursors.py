"""Opaque page cursors: a run page's key ``(created_at, run_id)`` as URL-safe base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from batchpilot.errors import SpecError
from batchpilot.store.run_pages import RunPageKey


def encode_cursor(key: RunPageKey) -> str:
    """The cursor a client passes back for the page after ``key``."""
    text = json.dumps([key.created_at.isoformat(), key.run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> RunPageKey:
    """The page key in ``cursor``; raises :class:`SpecError` (field ``cursor``) for one this
    server did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        key = RunPageKey(datetime.fromisoformat(created_at), str(run_id))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise SpecError(
            "'cursor' is not a cursor this server returned; start again without it",
            field="cursor",
        ) from None
    if key.created_at.tzinfo is None:
        raise SpecError("'cursor' is not a cursor this server returned", field="cursor")
    return key


__all__ = ["decode_cursor", "encode_cursor"]
