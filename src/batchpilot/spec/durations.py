"""Durations written as seconds or as "10s", "5m", "1h", "1d", "1h30m"."""

from __future__ import annotations

import math
import re

from batchpilot.spec.limits import MAX_DURATION_S

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object, *, maximum: float = MAX_DURATION_S) -> float:
    """Return ``value`` in seconds.

    Accepts a number of seconds or a string such as ``"90"``, ``"10s"``, ``"5m"``,
    ``"1h30m"``, from 0 up to ``maximum`` (7 days unless given). Raises ``ValueError``
    naming the value for anything else: text that is no duration, a negative one,
    ``nan``, ``inf`` or a number too large to be finite (``1e400``).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = _seconds_of_number(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"invalid duration {value!r}: use seconds or a number with a unit "
                    "(ms, s, m, h, d), e.g. 10s, 5m, 1h30m"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f"expected a duration, got {value!r}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    if seconds > maximum:
        raise ValueError(
            f"a duration can be at most {maximum:g} s ({maximum / 86400:g} days), got {value!r}"
        )
    return seconds


def _seconds_of_number(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.inf


#: the longest age :func:`parse_age` accepts: 100 years
MAX_AGE_S = 100 * 365 * 86400.0


def parse_age(value: str) -> float:
    """Return an age such as ``"30d"``, ``"12h"`` or ``"1d12h"`` in seconds.

    Unlike :func:`parse_duration`, a unit is required (a bare ``30`` would be
    read as seconds, a costly mistake when it chooses what to delete), and up
    to 100 years are accepted. Raises ``ValueError`` naming the value for
    anything else, e.g. ``30x`` or ``-1d``.
    """
    text = value.strip()
    hint = "use a number with a unit (s, m, h, d), e.g. 30d, 12h or 1d12h"
    try:
        float(text)
    except ValueError:
        pass
    else:
        raise ValueError(f"invalid age {value!r}: a unit is needed; {hint}")
    try:
        return parse_duration(text, maximum=MAX_AGE_S)
    except ValueError:
        if text.startswith("-"):
            raise ValueError(f"invalid age {value!r}: an age cannot be negative") from None
        raise ValueError(f"invalid age {value!r}: {hint} (at most 100 years)") from None
