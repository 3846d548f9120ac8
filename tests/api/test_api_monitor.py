"""``/api/v1/stats``, ``/api/v1/alerts`` and ``/metrics``: the monitor's numbers over HTTP,
equal to what the dashboard and the CLI show."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from batchpilot.clock import SystemClock
from batchpilot.engine import RunService
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.monitor.overview import day_overview, day_window
from batchpilot.pipeline import load_pipeline
from batchpilot.states import RunStatus
from tests.api.conftest import InProcessApi

BROKEN = """\
name: broken
nodes:
  - id: boom
    type: python
    config: {callable: "broken_steps:boom"}
"""
BROKEN_STEPS = """\
def boom():
    raise RuntimeError("boom")
"""


def _run_hello(api: InProcessApi, times: int) -> None:
    service = RunService(settings=api.settings, store=api.store)
    spec = load_pipeline(api.folder / "hello.yaml")
    for _ in range(times):
        assert service.start(spec).status is RunStatus.SUCCESS


def test_stats_are_the_dashboard_overviews_numbers(api: InProcessApi):
    _run_hello(api, 2)
    read = api.tokens.header("read")
    answer = api.client.get("/api/v1/stats", headers=read)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    now = datetime.now(UTC)
    spec = load_pipeline(api.folder / "hello.yaml")
    window = day_window(now.date(), ZoneInfo("UTC"))
    expected = day_overview(api.store, [spec], window, now).to_dict()
    assert body == expected
    assert body["done"] == 2 and body["success"] == 2 and body["success_rate"] == 1.0
    other = api.client.get("/api/v1/stats", params={"pipeline": "nosuch"}, headers=read).json()
    assert other["done"] == 0 and other["success_rate"] is None
    past = api.client.get("/api/v1/stats", params={"day": "2020-01-01"}, headers=read).json()
    assert past["day"] == "2020-01-01" and past["done"] == 0


def test_stats_refuse_a_bad_day_or_time_zone_naming_it(api: InProcessApi):
    read = api.tokens.header("read")
    for params, named in (
        ({"day": "2026-13-45"}, "2026-13-45"),
        ({"timezone": "Mars/Base"}, "Mars/Base"),
    ):
        answer = api.client.get("/api/v1/stats", params=params, headers=read)
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/problem+json"
        assert named in answer.json()["detail"]


def test_metrics_are_prometheus_text_read_from_the_store(api: InProcessApi):
    _run_hello(api, 3)
    answer = api.client.get("/metrics", headers=api.tokens.header("read"))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert samples[("batchpilot_runs", (("pipeline", "hello"), ("status", "success")))] == 3
    assert samples[("batchpilot_outbox_backlog", ())] == 0


def test_alerts_list_the_episodes_alerts_list_prints(api: InProcessApi):
    (api.folder / "broken.yaml").write_text(BROKEN)
    (api.folder / "broken_steps.py").write_text(BROKEN_STEPS)
    service = RunService(settings=api.settings, store=api.store)
    run = service.start(load_pipeline(api.folder / "broken.yaml"))
    assert run.status is RunStatus.FAILED
    evaluate_run(api.store, run.run_id, defined_channels=(), clock=SystemClock())
    read = api.tokens.header("read")
    answer = api.client.get("/api/v1/alerts", params={"open": "true"}, headers=read)
    assert answer.status_code == 200, answer.text
    [alert] = answer.json()
    assert alert == api.store.alerts.list(open_only=True)[0].to_dict()
    assert alert["pipeline"] == "broken" and alert["rule"] == "failure" and alert["state"] == "open"
    assert alert["run_id"] == run.run_id
    none = api.client.get("/api/v1/alerts", params={"pipeline": "hello"}, headers=read)
    assert none.json() == []
    metrics = api.client.get("/metrics", headers=read).text
    assert 'batchpilot_open_alerts{pipeline="broken",rule="failure"} 1.0' in metrics
