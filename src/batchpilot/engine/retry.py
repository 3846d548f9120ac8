"""Retry decisions as pure functions of the policy, the attempt and the error."""

from __future__ import annotations

import random

from batchpilot.errors import PermanentStepError
from batchpilot.spec.model import RetryBackoff, RetryPolicy


def should_retry(policy: RetryPolicy, attempt: int, error: BaseException) -> bool:
    """True if attempt number ``attempt`` (1-based) that raised ``error`` gets another try."""
    if isinstance(error, PermanentStepError):
        return False
    return attempt <= policy.retries


def retry_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

    Exponential backoff doubles the delay each attempt, capped at
    ``max_retry_delay_s``; jitter spreads it over [50%, 100%] of that value
    so many failing tasks do not retry in lockstep.
    """
    base = policy.retry_delay_s
    if policy.backoff is RetryBackoff.EXPONENTIAL:
        base = base * (2 ** max(attempt - 1, 0))
    delay = min(base, policy.max_retry_delay_s)
    if policy.jitter and delay > 0:
        delay *= 0.5 + 0.5 * (rng or random).random()
    return delay
