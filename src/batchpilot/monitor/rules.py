"""The alert rules as pure decisions: plain figures in, a :class:`Verdict` out.

Each ``decide_*`` function returns None when it cannot judge (the rule is off,
or there is too little history for a baseline), else a verdict that either
fires or says the rule holds (which closes an open episode). A verdict carries
the observed value, the baseline and the threshold in words, and a sentence a
person woken at 3 a.m. reads without opening anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from batchpilot.notify.message import Severity
from batchpilot.spec.monitoring import (
    HISTORY_RUNS,
    MIN_HISTORY_RUNS,
    LowVolumeRule,
    RejectsRule,
    SlowRule,
)


@dataclass(frozen=True)
class Verdict:
    """One rule's judgement of one run (or one task of it)."""

    rule: str
    fired: bool
    observed: str
    baseline: str
    threshold: str
    summary: str
    task: str | None = None
    severity: Severity = Severity.WARNING


@dataclass(frozen=True)
class FailureFacts:
    """What the ``failure`` rule looks at."""

    failed: bool
    error: str | None = None
    needs_attention: bool = False
    compensation_failed: tuple[str, ...] = ()
    interrupted: bool = False
    #: the first failed tasks' one-line errors (``load: KeyError: 'id'``)
    task_errors: tuple[str, ...] = ()


def format_duration(seconds: float) -> str:
    """``41 min 12 s``, ``2 h 5 min``, ``3.2 s``: a duration as a person says it."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_rows(rows: float) -> str:
    """``1,234 rows``."""
    count = round(rows)
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def format_ratio(ratio: float) -> str:
    """``2.5%`` (or ``0.01%`` for small ones)."""
    percent = ratio * 100
    return f"{percent:.2f}%" if percent < 1 else f"{percent:.1f}%"


def _history_words(count: int) -> str:
    return f"mean of the last {count} successful run{'s' if count != 1 else ''}"


def decide_failure(facts: FailureFacts, *, enabled: bool = True) -> Verdict | None:
    """Fires when the run failed (not merely interrupted by a person), a compensation
    failed, or the run needs attention; holds when the run succeeded."""
    if not enabled or facts.interrupted:
        return None
    if facts.compensation_failed or facts.needs_attention:
        tasks = ", ".join(facts.compensation_failed)
        observed = f"compensation failed at {tasks}" if tasks else "the run needs attention by hand"
        return Verdict(
            rule="failure",
            fired=True,
            observed=observed,
            baseline="failed runs are compensated automatically",
            threshold="any failed compensation",
            summary=(
                f"The run failed and {observed}: what its succeeded tasks wrote may still "
                "be in the targets. Look at the run before resuming it."
            ),
            severity=Severity.CRITICAL,
        )
    if facts.failed:
        reason = facts.error or "the run failed"
        return Verdict(
            rule="failure",
            fired=True,
            observed=f"failed: {reason}",
            baseline="runs succeed",
            threshold="any failed run",
            summary=" ".join((f"The run failed ({reason}).", *facts.task_errors)),
            severity=Severity.CRITICAL,
        )
    return Verdict("failure", False, "succeeded", "runs succeed", "any failed run", "")


def decide_slow(
    duration_s: float,
    history_s: Sequence[float],
    rule: SlowRule,
    *,
    task: str | None = None,
) -> Verdict | None:
    """Fires when ``duration_s`` exceeds ``rule.factor`` x the mean of ``history_s`` (the
    durations of the last successful runs, failed ones excluded); None when the rule is
    off or there are fewer than 3 of them."""
    history = list(history_s)[:HISTORY_RUNS]
    if not rule.enabled or len(history) < MIN_HISTORY_RUNS:
        return None
    mean = fmean(history)
    limit = rule.factor * mean
    what = f"Task {task}" if task else "The run"
    observed = format_duration(duration_s)
    baseline = f"{format_duration(mean)} ({_history_words(len(history))})"
    threshold = f"{format_duration(limit)} ({rule.factor:g}x the mean)"
    fired = duration_s > limit
    times = duration_s / mean if mean > 0 else float("inf")
    summary = (
        f"{what} took {observed}, {times:.1f}x its usual {format_duration(mean)} "
        f"({_history_words(len(history))}); the alert threshold is {threshold}."
    )
    return Verdict("slow", fired, observed, baseline, threshold, summary, task=task)


def decide_low_volume(
    rows_written: int, history_rows: Sequence[int], rule: LowVolumeRule
) -> Verdict | None:
    """Fires when the rows written by the loads are below ``rule.min_ratio`` x expected:
    ``rule.expected_rows``, else the mean of the last successful runs (at least 3)."""
    if not rule.enabled:
        return None
    if rule.expected_rows is not None:
        expected: float = rule.expected_rows
        source = "set in the pipeline file (expected_rows)"
    else:
        history = list(history_rows)[:HISTORY_RUNS]
        if len(history) < MIN_HISTORY_RUNS:
            return None
        expected = fmean(history)
        source = _history_words(len(history))
    limit = rule.min_ratio * expected
    observed = format_rows(rows_written)
    baseline = f"{format_rows(expected)} ({source})"
    threshold = f"fewer than {format_rows(limit)} ({format_ratio(rule.min_ratio)} of expected)"
    share = rows_written / expected if expected > 0 else 1.0
    summary = (
        f"The loads wrote {observed}, {format_ratio(share)} of the expected "
        f"{format_rows(expected)} ({source}); the alert threshold is {threshold}."
    )
    return Verdict("low_volume", rows_written < limit, observed, baseline, threshold, summary)


def decide_rejects(
    task: str, rows_in: int | None, rows_rejected: int | None, rule: RejectsRule
) -> Verdict | None:
    """Fires when the task rejected more than ``rule.max_ratio`` of its rows in; None when
    the rule is off or the task reported no rows in."""
    if not rule.enabled or not rows_in or rows_in <= 0:
        return None
    rejected = rows_rejected or 0
    ratio = rejected / rows_in
    observed = f"{format_rows(rejected)} rejected of {format_rows(rows_in)} ({format_ratio(ratio)})"
    threshold = f"more than {format_ratio(rule.max_ratio)} rejected"
    summary = (
        f"Task {task} rejected {format_rows(rejected)} of the {format_rows(rows_in)} it read "
        f"({format_ratio(ratio)}); the alert threshold is {threshold}."
    )
    return Verdict(
        "rejects",
        ratio > rule.max_ratio,
        observed,
        "no rejected rows",
        threshold,
        summary,
        task=task,
    )


__all__ = [
    "FailureFacts",
    "Verdict",
    "decide_failure",
    "decide_low_volume",
    "decide_rejects",
    "decide_slow",
    "format_duration",
    "format_ratio",
    "format_rows",
]
