"""Retry decisions: how many attempts, how long between them, what is never retried."""

from __future__ import annotations

import random

from batchpilot.engine.retry import retry_delay, should_retry
from batchpilot.errors import PermanentStepError, StepError
from batchpilot.spec import RetryBackoff, RetryPolicy


def test_retries_until_the_budget_is_spent():
    policy = RetryPolicy(retries=2)
    assert should_retry(policy, 1, StepError("x"))
    assert should_retry(policy, 2, StepError("x"))
    assert not should_retry(policy, 3, StepError("x"))


def test_permanent_errors_are_never_retried():
    assert not should_retry(RetryPolicy(retries=5), 1, PermanentStepError("bad data"))


def test_fixed_delay_without_jitter_is_constant():
    policy = RetryPolicy(retries=3, retry_delay_s=10, jitter=False)
    assert [retry_delay(policy, a) for a in (1, 2, 3)] == [10, 10, 10]


def test_exponential_backoff_doubles_and_is_capped():
    policy = RetryPolicy(
        retries=10,
        retry_delay_s=10,
        backoff=RetryBackoff.EXPONENTIAL,
        max_retry_delay_s=60,
        jitter=False,
    )
    assert [retry_delay(policy, a) for a in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_jitter_stays_between_half_and_full_delay():
    policy = RetryPolicy(retries=3, retry_delay_s=10, jitter=True)
    rng = random.Random(7)
    delays = [retry_delay(policy, 1, rng) for _ in range(200)]
    assert all(5 <= d <= 10 for d in delays)
    assert max(delays) - min(delays) > 2
