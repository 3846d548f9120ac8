"""Prometheus metrics read from the state store at scrape time.

:func:`render_metrics` gives the body and content type ``/metrics`` of
``batchpilot serve`` answers with; :class:`StoreCollector` is the
prometheus-client collector behind it, for a caller with a registry of its own.
Nothing is counted in memory: every scrape reads the store (a few indexed
queries), so all ``serve`` processes and workers on one store report the same
numbers, and a restart loses none. As retention deletes old runs, run counts
are gauges, not counters.

============================================  =========  ==========================================
metric                                        type       labels: what it is
============================================  =========  ==========================================
``batchpilot_runs``                           gauge      pipeline, status: runs in the state store
``batchpilot_run_duration_seconds``           histogram  pipeline, status: duration of the
                                                         pipeline's last :data:`RECENT_RUNS`
                                                         ended runs
``batchpilot_last_success_timestamp_seconds`` gauge      pipeline: when its last successful run
                                                         (among those) ended, Unix time
``batchpilot_last_run_rows_written``          gauge      pipeline: rows its loads wrote in that run
``batchpilot_last_run_rows_rejected``         gauge      pipeline: rows its tasks rejected in it
``batchpilot_scheduler_lag_seconds``          gauge      pipeline: slot to start of its last
                                                         scheduled run
``batchpilot_outbox_backlog``                 gauge      notifications not yet delivered
``batchpilot_open_alerts``                    gauge      pipeline, rule: open alert episodes (only
                                                         when an ``open_alerts`` source is given)
============================================  =========  ==========================================

Raises :class:`~batchpilot.errors.StoreError` when the store cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import groupby

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from batchpilot.monitor.history import rows_written
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.run_timings import RunTiming

#: how many of each pipeline's most recent ended runs the histograms and "last" gauges read
RECENT_RUNS = 100
#: duration buckets (seconds): batch runs last from seconds to hours
DURATION_BUCKETS: tuple[float, ...] = (
    1,
    5,
    15,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
    14400,
    43200,
    86400,
)

#: open alert episodes by (pipeline, rule): the alert rules' store provides it
OpenAlerts = Callable[[], Mapping[tuple[str, str], int]]


class StoreCollector(Collector):
    """Collects batchpilot's metrics from ``store`` on each scrape (see the module)."""

    def __init__(
        self,
        store: RunStore,
        *,
        recent_runs: int = RECENT_RUNS,
        open_alerts: OpenAlerts | None = None,
    ) -> None:
        self.store = store
        self.recent_runs = recent_runs
        self.open_alerts = open_alerts

    def collect(self) -> Iterator[Metric]:
        """Read the store and yield every metric family."""
        yield self._run_counts()
        timings = self.store.recent_run_timings(per_pipeline=self.recent_runs)
        by_pipeline = {p: list(ts) for p, ts in groupby(timings, key=lambda t: t.pipeline)}
        yield _duration_histogram(by_pipeline, self.recent_runs)
        yield from self._last_success(by_pipeline)
        yield _scheduler_lag(by_pipeline)
        backlog = GaugeMetricFamily(
            "batchpilot_outbox_backlog", "Notifications in the outbox not yet delivered."
        )
        backlog.add_metric([], self.store.outbox_backlog())
        yield backlog
        if self.open_alerts is not None:
            alerts = GaugeMetricFamily(
                "batchpilot_open_alerts",
                "Open alert episodes by pipeline and rule.",
                labels=["pipeline", "rule"],
            )
            for (pipeline, rule), count in sorted(self.open_alerts().items()):
                alerts.add_metric([pipeline, rule], count)
            yield alerts

    def _run_counts(self) -> Metric:
        family = GaugeMetricFamily(
            "batchpilot_runs",
            "Runs in the state store by pipeline and status (retention deletes old ones).",
            labels=["pipeline", "status"],
        )
        for (pipeline, status), count in sorted(self.store.run_counts().items()):
            family.add_metric([pipeline, status], count)
        return family

    def _last_success(self, by_pipeline: Mapping[str, list[RunTiming]]) -> Iterator[Metric]:
        ended = GaugeMetricFamily(
            "batchpilot_last_success_timestamp_seconds",
            "When the pipeline's last successful run ended (Unix time).",
            labels=["pipeline"],
        )
        written = GaugeMetricFamily(
            "batchpilot_last_run_rows_written",
            "Rows the loads of the pipeline's last successful run wrote.",
            labels=["pipeline"],
        )
        rejected = GaugeMetricFamily(
            "batchpilot_last_run_rows_rejected",
            "Rows the tasks of the pipeline's last successful run rejected.",
            labels=["pipeline"],
        )
        last = {
            p: next((t for t in ts if t.status is RunStatus.SUCCESS), None)
            for p, ts in by_pipeline.items()
        }
        found = {p: t for p, t in last.items() if t is not None}
        tasks = self.store.tasks_of_runs([t.run_id for t in found.values()])
        for pipeline, timing in found.items():
            if timing.ended_at is not None:
                ended.add_metric([pipeline], timing.ended_at.timestamp())
            run_tasks = tasks.get(timing.run_id, [])
            rows = rows_written(self.store.get_run(timing.run_id).spec, run_tasks)
            if rows is not None:
                written.add_metric([pipeline], rows)
            counts = [t.rows_rejected for t in run_tasks if t.rows_rejected is not None]
            if counts:
                rejected.add_metric([pipeline], sum(counts))
        yield from (ended, written, rejected)


def _duration_histogram(by_pipeline: Mapping[str, list[RunTiming]], recent_runs: int) -> Metric:
    family = HistogramMetricFamily(
        "batchpilot_run_duration_seconds",
        f"Duration of each pipeline's last {recent_runs} ended runs, by status.",
        labels=["pipeline", "status"],
    )
    for pipeline, timings in sorted(by_pipeline.items()):
        by_status: dict[str, list[float]] = {}
        for t in timings:
            if (duration := t.duration_s) is not None:
                by_status.setdefault(t.status.value, []).append(duration)
        for status, durations in sorted(by_status.items()):
            buckets = [
                (_le(bound), sum(1 for d in durations if d <= bound)) for bound in DURATION_BUCKETS
            ]
            buckets.append(("+Inf", len(durations)))
            family.add_metric([pipeline, status], buckets, sum_value=sum(durations))
    return family


def _scheduler_lag(by_pipeline: Mapping[str, list[RunTiming]]) -> Metric:
    family = GaugeMetricFamily(
        "batchpilot_scheduler_lag_seconds",
        "Seconds from the slot to the start of the pipeline's last scheduled run.",
        labels=["pipeline"],
    )
    for pipeline, timings in sorted(by_pipeline.items()):
        delay = next((d for t in timings if (d := t.slot_delay_s) is not None), None)
        if delay is not None:
            family.add_metric([pipeline], delay)
    return family


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{int(bound)}.0"


def render_metrics(
    store: RunStore, *, open_alerts: OpenAlerts | None = None, recent_runs: int = RECENT_RUNS
) -> tuple[bytes, str]:
    """The Prometheus text exposition of the store's metrics and its content type.

    ``open_alerts`` gives the open alert episodes by (pipeline, rule); without it
    ``batchpilot_open_alerts`` is left out. Raises :class:`StoreError`.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, recent_runs=recent_runs, open_alerts=open_alerts))
    return generate_latest(registry), CONTENT_TYPE_LATEST
