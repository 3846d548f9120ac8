"""The delay a schedule's ``jitter`` adds to a slot: spread, yet the same every time.

The delay is derived from the pipeline and the slot, not drawn at random, so two
``serve`` processes and a restarted one agree on when a slot starts, and a test
can predict it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime


def jitter_delay(pipeline: str, slot: datetime, jitter_s: float) -> float:
    """Seconds in ``[0, jitter_s)`` to wait after ``slot`` before starting its run
    (0 when ``jitter_s`` is 0)."""
    if jitter_s <= 0:
        return 0.0
    digest = hashlib.sha256(f"{pipeline}\x00{slot.timestamp()!r}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * jitter_s


__all__ = ["jitter_delay"]
