"""``batchpilot stats``: a pipeline's success rate, durations and rows, as pure functions
of its :class:`~batchpilot.monitor.history.RunSample` history.

Choices, as an on-call engineer reads them:

- the success rate is successes over runs that succeeded or failed; cancelled
  runs (a person stopped them) are counted apart and do not lower it;
- durations and rows are those of successful runs (a run that failed early is
  short and writes little: it would hide a slowdown or a drop);
- a trend compares the mean of the newer half of the values with the mean of the
  older half (the middle value of an odd count is left out); it reads ``up`` or
  ``down`` past :data:`FLAT_WITHIN` (5 %) of change, else ``flat``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchpilot.errors import UnknownPipeline
from batchpilot.monitor.history import RunSample, pipeline_history
from batchpilot.states import RunStatus
from batchpilot.store import RunStore

#: a relative change within this counts as ``flat``
FLAT_WITHIN = 0.05


@dataclass(frozen=True)
class Trend:
    """The mean of the newer half of a series against the mean of its older half."""

    older_mean: float
    newer_mean: float

    @property
    def change(self) -> float | None:
        """The relative change (0.25: a quarter more); None when the older mean is 0."""
        if self.older_mean == 0:
            return None
        return (self.newer_mean - self.older_mean) / self.older_mean

    @property
    def direction(self) -> str:
        """``up``, ``down`` or ``flat`` (within :data:`FLAT_WITHIN`)."""
        change = self.change
        if change is None:
            return "flat" if self.newer_mean == self.older_mean else "up"
        if change > FLAT_WITHIN:
            return "up"
        if change < -FLAT_WITHIN:
            return "down"
        return "flat"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: both means, the change (a fraction) and the direction."""
        change = self.change
        return {
            "older_mean": round(self.older_mean, 3),
            "newer_mean": round(self.newer_mean, 3),
            "change": round(change, 4) if change is not None else None,
            "direction": self.direction,
        }


def percentile(values: Sequence[float], q: int) -> float | None:
    """The ``q``-th percentile (1 to 99) of ``values``, interpolated between the closest
    ranks (the inclusive method); None for no values."""
    if not 1 <= q <= 99:
        raise ValueError(f"a percentile is from 1 to 99, got {q}")
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def trend(values: Sequence[float]) -> Trend | None:
    """The :class:`Trend` of a series, oldest value first; None under two values."""
    half = len(values) // 2
    if half == 0:
        return None
    return Trend(statistics.fmean(values[:half]), statistics.fmean(values[-half:]))


@dataclass(frozen=True)
class PipelineStats:
    """What ``batchpilot stats`` shows for one pipeline (see the module for the choices)."""

    pipeline: str
    samples: tuple[RunSample, ...]

    @property
    def runs(self) -> int:
        """How many ended runs the statistics cover."""
        return len(self.samples)

    @property
    def by_status(self) -> dict[str, int]:
        """How many of them ended in each status."""
        return dict(Counter(s.status.value for s in self.samples))

    @property
    def success_rate(self) -> float | None:
        """Successes over runs that succeeded or failed; None when there are none."""
        counts = self.by_status
        judged = counts.get(RunStatus.SUCCESS.value, 0) + counts.get(RunStatus.FAILED.value, 0)
        return counts.get(RunStatus.SUCCESS.value, 0) / judged if judged else None

    @property
    def successes(self) -> tuple[RunSample, ...]:
        """The successful runs, oldest first."""
        return tuple(s for s in self.samples if s.status is RunStatus.SUCCESS)

    @property
    def durations(self) -> list[float]:
        """Seconds each successful run took, oldest first."""
        return [d for s in self.successes if (d := s.duration_s) is not None]

    @property
    def rows(self) -> list[int]:
        """Rows each successful run's loads wrote, oldest first (runs with no count left out)."""
        return [s.rows_written for s in self.successes if s.rows_written is not None]

    @property
    def duration_trend(self) -> Trend | None:
        """The trend of :attr:`durations`."""
        return trend(self.durations)

    @property
    def rows_trend(self) -> Trend | None:
        """The trend of :attr:`rows`."""
        return trend(self.rows)

    @property
    def slot_delays(self) -> list[float]:
        """Seconds from slot to start of each scheduled run, oldest first."""
        return [d for s in self.samples if (d := s.slot_delay_s) is not None]

    @property
    def first_run_at(self) -> datetime | None:
        """When the oldest run covered was created."""
        return self.samples[0].created_at if self.samples else None

    @property
    def last_run_at(self) -> datetime | None:
        """When the newest run covered was created."""
        return self.samples[-1].created_at if self.samples else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``batchpilot stats --output json``."""
        durations, rows, delays = self.durations, self.rows, self.slot_delays
        duration_trend, rows_trend = self.duration_trend, self.rows_trend
        rate = self.success_rate
        return {
            "pipeline": self.pipeline,
            "runs": self.runs,
            "by_status": self.by_status,
            "success_rate": round(rate, 4) if rate is not None else None,
            "first_run_at": _iso(self.first_run_at),
            "last_run_at": _iso(self.last_run_at),
            "duration_s": {
                "p50": _round(percentile(durations, 50)),
                "p95": _round(percentile(durations, 95)),
                "trend": duration_trend.to_dict() if duration_trend else None,
                "values": [round(d, 3) for d in durations],
            },
            "rows_written": {
                "last": rows[-1] if rows else None,
                "mean": _round(statistics.fmean(rows)) if rows else None,
                "trend": rows_trend.to_dict() if rows_trend else None,
                "values": rows,
            },
            "slot_delay_s": {
                "p50": _round(percentile(delays, 50)),
                "p95": _round(percentile(delays, 95)),
                "max": _round(max(delays)) if delays else None,
            },
        }


def pipeline_stats(pipeline: str, samples: Sequence[RunSample]) -> PipelineStats:
    """The statistics of ``pipeline`` over ``samples`` (oldest first)."""
    return PipelineStats(pipeline, tuple(samples))


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def read_pipeline_stats(store: RunStore, pipeline: str, *, last: int) -> PipelineStats:
    """The statistics of ``pipeline``'s ``last`` most recent ended runs.

    Raises :class:`UnknownPipeline` when the store has neither a run nor a
    schedule of it (a known pipeline without ended runs gets empty statistics).
    """
    if pipeline not in store.known_pipelines():
        raise UnknownPipeline(pipeline, sorted(store.known_pipelines()))
    return pipeline_stats(pipeline, pipeline_history(store, pipeline, last=last))
