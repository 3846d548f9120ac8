"""Waiting for an event a test cannot be told of directly (a file, a row, a line of
output) by polling it: a guard against a hang, never a timing claim."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: generous: an event on a loaded machine, not a speed claim
WAIT_S = 90.0


def wait_until(
    check: Callable[[], Any],
    what: str,
    explain: Callable[[], str] = str,
    *,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.1,
) -> Any:
    """Poll ``check`` every ``interval_s`` until it returns something truthy, and return
    that; after ``timeout_s`` fail saying ``what`` did not happen, then ``explain()``
    (e.g. what the process under test printed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:g}s\n{explain()}")
