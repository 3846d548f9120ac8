"""The alert rules as pure decisions: figures in, a verdict with its numbers in words out."""

from __future__ import annotations

import pytest

from batchpilot.monitor.rules import (
    FailureFacts,
    decide_failure,
    decide_low_volume,
    decide_rejects,
    decide_slow,
    format_duration,
)
from batchpilot.spec.monitoring import LowVolumeRule, RejectsRule, SlowRule

# (duration, history, rule) -> fired (None: no verdict)
SLOW_CASES = [
    pytest.param(25.0, [10.0, 10.0, 10.0], SlowRule(), True, id="2.5x the mean fires"),
    pytest.param(20.0, [10.0, 10.0, 10.0], SlowRule(), False, id="exactly 2x holds"),
    pytest.param(20.1, [10.0, 10.0, 10.0], SlowRule(), True, id="just above 2x fires"),
    pytest.param(25.0, [10.0, 10.0, 10.0], SlowRule(factor=3), False, id="factor 3 holds"),
    pytest.param(99.0, [10.0, 10.0], SlowRule(), None, id="2 runs of history: no baseline"),
    pytest.param(99.0, [], SlowRule(), None, id="no history"),
    pytest.param(99.0, [10.0] * 5, SlowRule(enabled=False), None, id="switched off"),
    pytest.param(
        25.0, [10.0] * 10 + [1000.0] * 5, SlowRule(), True, id="only the last 10 runs count"
    ),
]


@pytest.mark.parametrize(("duration", "history", "rule", "fired"), SLOW_CASES)
def test_slow(duration: float, history: list[float], rule: SlowRule, fired: bool | None):
    verdict = decide_slow(duration, history, rule)
    assert (verdict.fired if verdict else None) == fired


def test_a_slow_verdict_says_the_observed_value_the_baseline_and_the_threshold():
    verdict = decide_slow(2472.0, [900.0, 1000.0, 1100.0], SlowRule())
    assert verdict is not None and verdict.fired
    assert verdict.observed == "41 min 12 s"
    assert verdict.baseline == "16 min 40 s (mean of the last 3 successful runs)"
    assert verdict.threshold == "33 min 20 s (2x the mean)"
    assert "2.5x its usual 16 min 40 s" in verdict.summary


# (rows written, history, rule) -> fired
VOLUME_CASES = [
    pytest.param(79, [100, 100, 100], LowVolumeRule(), True, id="79% of the mean fires"),
    pytest.param(80, [100, 100, 100], LowVolumeRule(), False, id="80% holds"),
    pytest.param(0, [100, 100, 100], LowVolumeRule(), True, id="nothing written fires"),
    pytest.param(50, [100, 100], LowVolumeRule(), None, id="no baseline yet"),
    pytest.param(
        500, [], LowVolumeRule(expected_rows=1000), True, id="expected_rows needs no history"
    ),
    pytest.param(900, [], LowVolumeRule(expected_rows=1000), False, id="90% of expected_rows"),
    pytest.param(
        60, [100] * 3, LowVolumeRule(min_ratio=0.5), False, id="min_ratio 0.5 holds at 60%"
    ),
    pytest.param(1, [100] * 3, LowVolumeRule(enabled=False), None, id="switched off"),
]


@pytest.mark.parametrize(("rows", "history", "rule", "fired"), VOLUME_CASES)
def test_low_volume(rows: int, history: list[int], rule: LowVolumeRule, fired: bool | None):
    verdict = decide_low_volume(rows, history, rule)
    assert (verdict.fired if verdict else None) == fired


# (rows in, rejected, rule) -> fired
REJECT_CASES = [
    pytest.param(1000, 11, RejectsRule(), True, id="1.1% fires"),
    pytest.param(1000, 10, RejectsRule(), False, id="exactly 1% holds"),
    pytest.param(1000, 0, RejectsRule(), False, id="none rejected"),
    pytest.param(1000, None, RejectsRule(), False, id="rejected not reported"),
    pytest.param(0, 5, RejectsRule(), None, id="no rows in: no verdict"),
    pytest.param(None, 5, RejectsRule(), None, id="rows in not reported"),
    pytest.param(1000, 40, RejectsRule(max_ratio=0.05), False, id="max_ratio 5% holds at 4%"),
    pytest.param(1000, 999, RejectsRule(enabled=False), None, id="switched off"),
]


@pytest.mark.parametrize(("rows_in", "rejected", "rule", "fired"), REJECT_CASES)
def test_rejects(rows_in: int | None, rejected: int | None, rule: RejectsRule, fired: bool | None):
    verdict = decide_rejects("load_users", rows_in, rejected, rule)
    assert (verdict.fired if verdict else None) == fired
    if verdict is not None:
        assert verdict.task == "load_users"


# (facts, enabled) -> fired
FAILURE_CASES = [
    pytest.param(FailureFacts(failed=True, error="failed tasks: load"), True, True, id="failed"),
    pytest.param(FailureFacts(failed=False), True, False, id="succeeded holds"),
    pytest.param(
        FailureFacts(failed=True, compensation_failed=("load",)), True, True, id="compensation"
    ),
    pytest.param(FailureFacts(failed=True, needs_attention=True), True, True, id="needs attention"),
    pytest.param(
        FailureFacts(failed=True, interrupted=True), True, None, id="stopped by a person: quiet"
    ),
    pytest.param(FailureFacts(failed=True), False, None, id="switched off"),
]


@pytest.mark.parametrize(("facts", "enabled", "fired"), FAILURE_CASES)
def test_failure(facts: FailureFacts, enabled: bool, fired: bool | None):
    verdict = decide_failure(facts, enabled=enabled)
    assert (verdict.fired if verdict else None) == fired


def test_a_failed_compensation_says_where_and_what_to_do():
    verdict = decide_failure(FailureFacts(failed=True, compensation_failed=("load_dwh",)))
    assert verdict is not None
    assert verdict.observed == "compensation failed at load_dwh"
    assert "Look at the run before resuming it" in verdict.summary


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(3.24, "3.2 s"), (59, "59 s"), (60, "1 min"), (2472, "41 min 12 s"), (7500, "2 h 5 min")],
)
def test_durations_read_as_a_person_says_them(seconds: float, words: str):
    assert format_duration(seconds) == words
