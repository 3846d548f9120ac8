"""``/metrics``: the Prometheus exposition read from the store, checked against runs made
by the real engine on SQLite and PostgreSQL, parsed with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from batchpilot.engine import RunService
from batchpilot.monitor.metrics import render_metrics
from batchpilot.spec.model import PipelineSpec
from batchpilot.states import RunStatus
from batchpilot.store import RunStore, utcnow
from tests.monitor.conftest import run_scheduled


def scrape(store: RunStore, **options: object) -> dict[str, dict[tuple, float]]:
    """Each sample's value by name and sorted labels."""
    body, content_type = render_metrics(store, **options)  # type: ignore[arg-type]
    assert content_type.startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def test_runs_durations_rows_and_lag_match_the_runs_made(
    service: RunService, store: RunStore, csv_pipeline: Callable[..., PipelineSpec]
):
    daily = csv_pipeline("daily", rows=3)
    assert service.start(daily).status is RunStatus.SUCCESS
    bigger = csv_pipeline("daily", rows=5)
    assert service.start(bigger).status is RunStatus.SUCCESS
    broken = csv_pipeline("hourly", fail=True)
    assert service.start(broken).status is RunStatus.FAILED
    slot = utcnow() - timedelta(seconds=90)
    scheduled = run_scheduled(service, csv_pipeline("hourly", rows=2), slot)
    lag = store.get_run(scheduled).slot_delay_s
    assert lag is not None and lag >= 90

    metrics = scrape(store)

    assert metrics["batchpilot_runs"] == {
        (("pipeline", "daily"), ("status", "success")): 2.0,
        (("pipeline", "hourly"), ("status", "failed")): 1.0,
        (("pipeline", "hourly"), ("status", "success")): 1.0,
    }
    counts = metrics["batchpilot_run_duration_seconds_count"]
    assert counts == {
        (("pipeline", "daily"), ("status", "success")): 2.0,
        (("pipeline", "hourly"), ("status", "failed")): 1.0,
        (("pipeline", "hourly"), ("status", "success")): 1.0,
    }
    total = sum(
        (r.ended_at - r.started_at).total_seconds()  # type: ignore[operator]
        for r in store.list_runs(pipeline="daily")
    )
    sums = metrics["batchpilot_run_duration_seconds_sum"]
    assert abs(sums[(("pipeline", "daily"), ("status", "success"))] - total) < 1e-6
    buckets = metrics["batchpilot_run_duration_seconds_bucket"]
    assert buckets[(("le", "+Inf"), ("pipeline", "daily"), ("status", "success"))] == 2.0
    # the latest successful run of each pipeline: 5 rows for daily, the scheduled 2 for hourly
    assert metrics["batchpilot_last_run_rows_written"] == {
        (("pipeline", "daily"),): 5.0,
        (("pipeline", "hourly"),): 2.0,
    }
    assert metrics["batchpilot_scheduler_lag_seconds"] == {(("pipeline", "hourly"),): lag}
    last_ok = store.get_run(scheduled).ended_at
    assert metrics["batchpilot_last_success_timestamp_seconds"][(("pipeline", "hourly"),)] == (
        last_ok.timestamp()  # type: ignore[union-attr]
    )
    assert metrics["batchpilot_outbox_backlog"] == {(): 0.0}
    assert "batchpilot_open_alerts" not in metrics  # no alert source given


def test_the_outbox_backlog_counts_undelivered_notifications(store: RunStore):
    now = utcnow()
    for i in range(3):
        store.enqueue_notification(
            channel="ops", idempotency_key=f"key-{i}", message={"text": "t"}, now=now
        )
    claimed = store.claim_notifications(owner="me", now=now, limit=1, lease_s=60)
    store.mark_notifications_delivered([claimed[0].outbox_id], owner="me", now=now)
    assert scrape(store)["batchpilot_outbox_backlog"] == {(): 2.0}


def test_open_alerts_come_from_the_source_the_alert_rules_give(store: RunStore):
    def open_alerts() -> dict[tuple[str, str], int]:
        return {("daily", "slow"): 1, ("hourly", "failure"): 1}

    assert scrape(store, open_alerts=open_alerts)["batchpilot_open_alerts"] == {
        (("pipeline", "daily"), ("rule", "slow")): 1.0,
        (("pipeline", "hourly"), ("rule", "failure")): 1.0,
    }


def test_an_empty_store_gives_zero_backlog_and_no_pipeline_series(store: RunStore):
    metrics = scrape(store)
    assert metrics["batchpilot_outbox_backlog"] == {(): 0.0}
    assert "batchpilot_runs" not in metrics  # a family without samples prints no series
