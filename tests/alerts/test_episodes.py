"""Alert episodes on a real SQLite store: one alert per episode, reminders only when asked
and not acknowledged, exactly one recovery notice; the numbers that explain each alert."""

from __future__ import annotations

from batchpilot.clock import FakeClock
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.notify import Message
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore
from batchpilot.store.alerts import AlertState
from tests.alerts.history import Figures, add_run, pipeline_document

ROUTED = {"oncall"}


def run_and_evaluate(
    store: RunStore, clock: FakeClock, document: dict, status: RunStatus, **kwargs
) -> str:
    """A run that started a minute after the last one, evaluated at its end."""
    started = clock.advance(60)
    duration = kwargs.pop("duration_s", 10.0)
    run_id = add_run(
        store, document, status=status, started_at=started, duration_s=duration, **kwargs
    )
    clock.advance(duration)
    evaluate_run(store, run_id, defined_channels=ROUTED, clock=clock)
    return run_id


def sent(store: RunStore) -> list[Message]:
    return [Message.from_dict(r.message) for r in store.list_notifications()]


def test_100_consecutive_failures_are_one_alert_then_one_recovery_notice(
    store: RunStore, clock: FakeClock
):
    document = pipeline_document("every_minute", notify={"default": ["oncall"]})
    first = run_and_evaluate(store, clock, document, RunStatus.FAILED)
    for _ in range(99):
        run_and_evaluate(store, clock, document, RunStatus.FAILED)
    assert [m.title for m in sent(store)] == ["every_minute: run failed"]
    good = run_and_evaluate(store, clock, document, RunStatus.SUCCESS)
    messages = sent(store)
    assert [m.title for m in messages] == [
        "every_minute: run failed",
        "Recovered: every_minute: run failed",
    ]
    assert messages[0].group == messages[1].group  # one episode, delivered in order
    [alert] = store.alerts.list()
    assert alert.state is AlertState.RESOLVED
    assert (alert.run_id, alert.resolved_by_run_id, alert.occurrences) == (first, good, 100)
    assert "resolved after 100 bad runs" in messages[1].summary
    # the next good run sends nothing more
    run_and_evaluate(store, clock, document, RunStatus.SUCCESS)
    assert len(sent(store)) == 2


def test_reminders_come_at_most_every_remind_every_while_the_episode_is_open(
    store: RunStore, clock: FakeClock
):
    document = pipeline_document(
        "every_minute", monitoring={"remind_every": "1h"}, notify={"default": ["oncall"]}
    )
    for _ in range(150):  # a failure a minute and 10 s for 150 runs: 175 minutes
        run_and_evaluate(store, clock, document, RunStatus.FAILED)
    titles = [m.title for m in sent(store)]
    assert titles == ["every_minute: run failed"] + ["Reminder: every_minute: run failed"] * 2
    [alert] = store.alerts.list(open_only=True)
    assert alert.reminders_sent == 2


def test_an_acknowledged_alert_gets_no_reminders_but_still_its_recovery(
    store: RunStore, clock: FakeClock
):
    document = pipeline_document(
        "every_minute", monitoring={"remind_every": "1m"}, notify={"default": ["oncall"]}
    )
    run_and_evaluate(store, clock, document, RunStatus.FAILED)
    [alert] = store.alerts.list()
    store.alerts.acknowledge(alert.alert_id, now=clock.now())
    for _ in range(10):
        run_and_evaluate(store, clock, document, RunStatus.FAILED)
    run_and_evaluate(store, clock, document, RunStatus.SUCCESS)
    assert [m.title for m in sent(store)] == [
        "every_minute: run failed",
        "Recovered: every_minute: run failed",
    ]


def test_a_run_evaluated_twice_changes_nothing_the_second_time(store: RunStore, clock: FakeClock):
    document = pipeline_document("p", notify={"default": ["oncall"]})
    run_id = run_and_evaluate(store, clock, document, RunStatus.FAILED)
    assert evaluate_run(store, run_id, defined_channels=ROUTED, clock=clock) is None
    [alert] = store.alerts.list()
    assert alert.occurrences == 1 and len(sent(store)) == 1


def test_a_slow_run_alert_carries_pipeline_run_rule_observed_baseline_threshold(
    store: RunStore, clock: FakeClock
):
    document = pipeline_document("daily_etl", notify={"slow": ["oncall"]})
    for _ in range(10):
        run_and_evaluate(store, clock, document, RunStatus.SUCCESS, duration_s=960.0)
    slow = run_and_evaluate(store, clock, document, RunStatus.SUCCESS, duration_s=2472.0)
    [message] = sent(store)
    facts = {f.label: f.value for f in message.facts}
    assert facts == {
        "Pipeline": "daily_etl",
        "Run": slow,
        "Rule": "slow",
        "Observed": "41 min 12 s",
        "Baseline": "16 min (mean of the last 10 successful runs)",
        "Threshold": "32 min (2x the mean)",
    }
    assert message.title == "daily_etl: run slower than usual"
    assert "The run took 41 min 12 s, 2.6x its usual 16 min" in message.summary
    [alert] = store.alerts.list(open_only=True)
    assert (alert.rule, alert.observed, alert.run_id) == ("slow", "41 min 12 s", slow)
    # a run back to normal closes it; a failed run in between neither closes nor re-opens
    run_and_evaluate(store, clock, document, RunStatus.FAILED)
    open_rules = {a.rule for a in store.alerts.list(open_only=True, pipeline="daily_etl")}
    assert open_rules == {"slow", "failure"}
    run_and_evaluate(store, clock, document, RunStatus.SUCCESS, duration_s=950.0)
    assert store.alerts.list(open_only=True) == []  # one good run closes both


def test_failed_runs_do_not_count_in_the_slow_baseline(store: RunStore, clock: FakeClock):
    document = pipeline_document("p", notify={"default": ["oncall"]})
    for _ in range(3):
        run_and_evaluate(store, clock, document, RunStatus.SUCCESS, duration_s=100.0)
    for _ in range(5):  # fast failures would halve the mean if they counted
        run_and_evaluate(store, clock, document, RunStatus.FAILED, duration_s=1.0)
    run_and_evaluate(store, clock, document, RunStatus.SUCCESS, duration_s=150.0)
    assert {a.rule for a in store.alerts.list()} == {"failure"}


def test_low_volume_and_rejects_are_judged_on_the_loads_and_each_task(
    store: RunStore, clock: FakeClock
):
    document = pipeline_document("p", notify={"default": ["oncall"]})
    usual = {"extract": Figures(rows_out=1000), "load": Figures(rows_in=1000, rows_out=1000)}
    for _ in range(3):
        run_and_evaluate(store, clock, document, RunStatus.SUCCESS, tasks=usual)
    thin = {
        "extract": Figures(rows_out=1000),
        "load": Figures(rows_in=1000, rows_out=500, rows_rejected=500),
    }
    run_and_evaluate(store, clock, document, RunStatus.SUCCESS, tasks=thin)
    alerts = {(a.rule, a.task): a for a in store.alerts.list(open_only=True)}
    assert set(alerts) == {("low_volume", None), ("rejects", "load")}
    assert alerts["low_volume", None].observed == "500 rows"
    assert alerts["low_volume", None].baseline == (
        "1,000 rows (mean of the last 3 successful runs)"
    )
    assert alerts["rejects", "load"].observed == "500 rows rejected of 1,000 rows (50.0%)"
    run_and_evaluate(store, clock, document, RunStatus.SUCCESS, tasks=usual)
    assert store.alerts.list(open_only=True) == []
    assert len(sent(store)) == 4  # two alerts, two recoveries


def test_routing_default_channel_and_no_channel(store: RunStore, clock: FakeClock):
    # no notify: at all -> the channel named 'default' when defined
    document = pipeline_document("p")
    run_id = add_run(
        store, document, status=RunStatus.FAILED, started_at=clock.advance(60), duration_s=1
    )
    evaluate_run(store, run_id, defined_channels={"default"}, clock=clock)
    assert [r.channel for r in store.list_notifications()] == ["default"]
    # no channel defined: the alert is recorded, nothing is sent
    other = pipeline_document("q")
    run_id = add_run(
        store, other, status=RunStatus.FAILED, started_at=clock.advance(60), duration_s=1
    )
    evaluate_run(store, run_id, defined_channels=set(), clock=clock)
    assert len(store.alerts.list(pipeline="q")) == 1
    assert len(store.list_notifications()) == 1


def test_a_failed_compensation_is_a_critical_failure_alert(store: RunStore, clock: FakeClock):
    document = pipeline_document("p", notify={"failure": ["oncall"], "default": ["elsewhere"]})
    run_and_evaluate(
        store,
        clock,
        document,
        RunStatus.FAILED,
        needs_attention=True,
        tasks={"load": Figures(state=TaskState.COMPENSATION_FAILED)},
    )
    [record] = store.list_notifications()
    assert record.channel == "oncall"
    assert record.message["severity"] == "critical"
    [alert] = store.alerts.list()
    assert alert.observed == "compensation failed at load"
