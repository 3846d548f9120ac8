"""The store side of the monitor, on SQLite and PostgreSQL: episodes, the evaluated-run
mark, listing for ``alerts list`` and ``GET /alerts``, acknowledging, and run history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchpilot.errors import AlertNotFound, StoreError
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.alerts import (
    AlertState,
    EpisodePlan,
    NewAlert,
    OutgoingNotification,
)
from tests.alerts.history import Figures, add_run, pipeline_document

NOW = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = RunStore(url)
    yield store
    store.dispose()


def new_alert(key: str = "k1", pipeline: str = "p", rule: str = "failure") -> NewAlert:
    return NewAlert(
        episode_key=key,
        pipeline=pipeline,
        rule=rule,
        task=None,
        severity="critical",
        run_id="r1",
        observed="failed",
        baseline="runs succeed",
        threshold="any failed run",
        message="p: run failed",
    )


def opening(alert: NewAlert, channel: str = "oncall") -> EpisodePlan:
    note = OutgoingNotification(channel, f"key-{alert.episode_key}", {"title": "t"})
    return EpisodePlan(opened=(alert,), notifications=(note,))


def test_an_evaluation_is_recorded_once_per_ending_of_a_run(store: RunStore):
    ended = NOW
    first = store.alerts.record_evaluation(
        run_id="r1", ended_at=ended, pipeline="p", planner=lambda _: opening(new_alert()), now=NOW
    )
    assert first is not None
    again = store.alerts.record_evaluation(
        run_id="r1", ended_at=ended, pipeline="p", planner=lambda _: EpisodePlan(), now=NOW
    )
    assert again is None
    seen: list[list[int]] = []

    def plan(open_alerts):  # type: ignore[no-untyped-def]
        seen.append([a.alert_id for a in open_alerts])
        return EpisodePlan(resolved=tuple(a.alert_id for a in open_alerts))

    retried = store.alerts.record_evaluation(
        run_id="r1", ended_at=ended + timedelta(hours=1), pipeline="p", planner=plan, now=NOW
    )
    assert retried is not None and len(seen[0]) == 1  # a retried run ends again: evaluated
    [alert] = store.alerts.list()
    assert alert.state is AlertState.RESOLVED and alert.resolved_by_run_id == "r1"
    assert [n.channel for n in store.list_notifications()] == ["oncall"]


def test_two_open_episodes_of_one_key_cannot_exist_and_the_loser_writes_nothing(
    store: RunStore,
):
    store.alerts.record_evaluation(
        run_id="r1", ended_at=NOW, pipeline="p", planner=lambda _: opening(new_alert()), now=NOW
    )
    # a second evaluator that read the open episodes before the first committed
    with pytest.raises(StoreError):
        store.alerts.record_evaluation(
            run_id="r2",
            ended_at=NOW,
            pipeline="p",
            planner=lambda _: opening(new_alert(), channel="other"),
            now=NOW,
        )
    assert len(store.alerts.list()) == 1
    assert [n.channel for n in store.list_notifications()] == ["oncall"]
    # its run is not marked: serve's sweep evaluates it again
    since = NOW - timedelta(days=1)
    document = pipeline_document("p")
    run_id = add_run(store, document, status=RunStatus.FAILED, started_at=NOW, duration_s=5)
    assert run_id in store.alerts.unevaluated_ended_runs(since=since)


def test_list_filters_open_and_pipeline_newest_first_and_ack(store: RunStore):
    for key, pipeline in (("a", "p"), ("b", "q"), ("c", "p")):
        store.alerts.record_evaluation(
            run_id=None,
            ended_at=None,
            pipeline=pipeline,
            planner=lambda _, k=key, p=pipeline: opening(new_alert(k, p)),
            now=NOW,
        )
    listed = store.alerts.list()
    assert [a.episode_key for a in listed] == ["c", "b", "a"]
    assert [a.episode_key for a in store.alerts.list(pipeline="p")] == ["c", "a"]
    assert [a.episode_key for a in store.alerts.list(limit=1)] == ["c"]
    first = listed[-1]
    store.alerts.record_evaluation(
        run_id=None,
        ended_at=None,
        pipeline="p",
        planner=lambda _: EpisodePlan(resolved=(first.alert_id,)),
        now=NOW,
    )
    assert [a.episode_key for a in store.alerts.list(open_only=True)] == ["c", "b"]
    assert store.alerts.count_open() == 2
    acked = store.alerts.acknowledge(listed[0].alert_id, now=NOW)
    assert acked.acknowledged_at == NOW
    as_json = acked.to_dict()
    assert as_json["state"] == "open" and as_json["id"] == listed[0].alert_id
    with pytest.raises(AlertNotFound, match="no alert with id 999"):
        store.alerts.acknowledge(999, now=NOW)


def test_history_reads_the_last_successful_runs_with_their_tasks(store: RunStore):
    document = pipeline_document("p")
    start = NOW - timedelta(days=1)
    ids = []
    for index in range(15):
        status = RunStatus.FAILED if index % 3 == 2 else RunStatus.SUCCESS
        ids.append(
            add_run(
                store,
                document,
                status=status,
                started_at=start + timedelta(minutes=index),
                duration_s=10 + index,
                tasks={"load": Figures(rows_out=100 + index)},
            )
        )
    add_run(
        store, pipeline_document("other"), status=RunStatus.SUCCESS, started_at=NOW, duration_s=1
    )
    past = store.history.last_successful_runs("p", limit=10)
    successful = [i for n, i in enumerate(ids) if n % 3 != 2]
    assert [p.run_id for p in past] == successful[::-1][:10]
    assert past[0].duration_s == 23.0 and past[0].tasks["load"].rows_out == 113  # run 13
    before = store.history.last_successful_runs(
        "p", before=start + timedelta(minutes=4, seconds=5), limit=10
    )
    assert [p.run_id for p in before] == [ids[3], ids[1], ids[0]]
