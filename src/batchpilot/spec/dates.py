"""The logical date of a run (``--date``, ``{{ ds }}``): a real calendar date, YYYY-MM-DD."""

from __future__ import annotations

import re
from datetime import date, datetime

from batchpilot.errors import SpecError

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_logical_date(value: str | date) -> str:
    """Return ``value`` if it is a calendar date written ``YYYY-MM-DD`` (or a ``date``,
    written so).

    Raises :class:`SpecError` (field ``date``) for anything else: ``2026-13-45``,
    ``yesterday``, ``20261120``.
    """
    if isinstance(value, date):
        return (value.date() if isinstance(value, datetime) else value).isoformat()
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise SpecError(
        f"the logical date {value!r} is not a calendar date: use YYYY-MM-DD, e.g. 2026-11-20",
        field="date",
    )
