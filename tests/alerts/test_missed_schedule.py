"""The ``missed_schedule`` rule: each "missed while down" record the scheduler leaves becomes
one alert, routed through ``notify:``, once per record; the next successful run recovers it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from batchpilot.clock import FakeClock
from batchpilot.monitor.evaluate import evaluate_run
from batchpilot.monitor.missed_schedule import MissedScheduleWatch
from batchpilot.monitor.serve_loop import MonitorLoop
from batchpilot.notify import ChannelRegistry, Message, parse_channel
from batchpilot.scheduler.tick import run_tick
from batchpilot.spec.loader import build_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.tables import runs

START = datetime(2024, 3, 10, 12, 0, 5, tzinfo=UTC)  # 13:00:05 in Paris


def hourly(**monitoring: Any):  # type: ignore[no-untyped-def]
    return build_pipeline(
        {
            "name": "hourly",
            "schedule": {"cron": "0 * * * *", "timezone": "Europe/Paris", "catchup": "last"},
            "notify": {"missed_schedule": ["oncall"], "default": ["data-team"]},
            "monitoring": monitoring,
            "nodes": [{"id": "a", "type": "empty"}],
        }
    )


def notes(store: RunStore) -> list[tuple[str, str]]:
    return [(n.channel, Message.from_dict(n.message).title) for n in store.list_notifications()]


def down_for_three_hours(store: RunStore, spec, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    run_tick([spec], store, clock)
    clock.set(START + timedelta(hours=3, minutes=20))  # 14:00, 15:00, 16:00 missed
    run_tick([spec], store, clock)


ALERT = ("oncall", "hourly: scheduled runs missed")


def test_a_missed_while_down_record_alerts_once_on_its_route(store: RunStore):
    spec = hourly()
    clock = FakeClock(START)
    down_for_three_hours(store, spec, clock)
    channels = ChannelRegistry(
        [
            parse_channel("oncall", "webhook+http://127.0.0.1:9/hook"),
            parse_channel("data-team", "webhook+http://127.0.0.1:9/other"),
        ]
    )
    loop = MonitorLoop(
        store, channels, clock, threading.Event(), pipelines=lambda: {"hourly": spec}
    )
    for _ in range(3):
        loop.step()
    # a second serve (or a restart) finds the record alerted already
    MissedScheduleWatch(store, clock, lambda: {"hourly": spec}, channels).check()
    assert notes(store) == [ALERT]
    [alert] = store.alerts.list(open_only=True)
    assert (alert.rule, alert.task, alert.run_id) == ("missed_schedule", None, None)
    assert alert.observed == (
        "3 slots missed (Europe/Paris): 2024-03-10 14:00, 2024-03-10 15:00, 2024-03-10 16:00"
    )
    message = Message.from_dict(store.list_notifications()[0].message)
    assert "missed while serve was down" in message.summary
    assert "only the latest of them runs (catchup: last)" in message.summary
    assert store.schedules.missed_slots_to_alert() == []


def test_the_next_successful_run_recovers_it_and_a_later_outage_alerts_again(store: RunStore):
    spec = hourly()
    clock = FakeClock(START)
    down_for_three_hours(store, spec, clock)
    watch = MissedScheduleWatch(store, clock, lambda: {"hourly": spec}, {"oncall", "data-team"})
    watch.check()
    caught_up = max(store.list_runs(pipeline="hourly"), key=lambda r: r.slot).run_id
    with store.engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.run_id == caught_up)
            .values(status=RunStatus.SUCCESS.value, started_at=clock.now(), ended_at=clock.now())
        )
    evaluate_run(store, caught_up, defined_channels={"oncall", "data-team"}, clock=clock)
    assert notes(store) == [ALERT, ("oncall", "Recovered: hourly: scheduled runs missed")]
    assert store.alerts.list(open_only=True) == []
    clock.set(START + timedelta(hours=6, minutes=20))  # down again: a new record, a new alert
    run_tick([spec], store, clock)
    watch.check()
    assert notes(store)[-1] == ALERT
    assert len(store.alerts.list()) == 2


def test_switched_off_the_record_is_marked_and_nobody_is_paged(store: RunStore):
    spec = hourly(missed_schedule=False)
    clock = FakeClock(START)
    down_for_three_hours(store, spec, clock)
    assert MissedScheduleWatch(store, clock, lambda: {"hourly": spec}, {"oncall"}).check() == []
    assert store.alerts.list() == [] and notes(store) == []
    assert store.schedules.missed_slots_to_alert() == []


def test_records_from_before_the_monitor_marks_are_not_news(store: RunStore):
    """Migration 0010 marks existing records alerted (an upgrade pages nobody)."""
    from alembic import command
    from alembic.config import Config

    from batchpilot.store import migrate

    config = Config()
    config.set_main_option("script_location", str(migrate._MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO bp_missed_slots (pipeline, detected_at, catchup, slot_count, slots)"
            " VALUES ('hourly', '2024-03-10 12:00:00', 'all', 1, '[\"2024-03-10T11:00:00+00:00\"]')"
        )
    url = store.url
    store.dispose()
    upgraded = RunStore(url)
    try:
        [record] = upgraded.schedules.missed_slots("hourly")
        assert record.alerted_at is not None
        assert upgraded.schedules.missed_slots_to_alert() == []
    finally:
        upgraded.dispose()
