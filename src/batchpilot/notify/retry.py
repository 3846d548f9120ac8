"""When to try a failed notification again: a pure decision, tested without sending."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, for up to ``max_age`` after the message
    was enqueued; then the message is dead.

    The n-th failure waits ``min(cap_s, base_s * 2 ** (n - 1))`` scaled by a random
    factor in ``[1 - jitter, 1]`` (so many messages failing together do not all come
    back in the same second); the last retry is moved to the end of ``max_age``.
    """

    base_s: float = 15.0
    cap_s: float = 30 * 60.0
    jitter: float = 0.5
    max_age: timedelta = timedelta(hours=24)

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failure (1 for the first)."""
        exponent = min(max(failures, 1) - 1, 32)
        ceiling = min(self.cap_s, self.base_s * 2.0**exponent)
        return ceiling * (1.0 - self.jitter * rng.random())

    def next_attempt_at(
        self,
        *,
        failures: int,
        enqueued_at: datetime,
        now: datetime,
        permanent: bool,
        rng: random.Random,
    ) -> datetime | None:
        """When to try again, or None when the message is dead (a permanent error, or
        ``max_age`` since it was enqueued is over)."""
        deadline = enqueued_at + self.max_age
        if permanent or now >= deadline:
            return None
        return min(now + timedelta(seconds=self.delay_s(failures, rng)), deadline)


DEFAULT_RETRY_POLICY = RetryPolicy()
