"""Following a run on Airflow survives an API server that stops answering for a while."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchpilot.airflow.errors import AirflowUnreachable
from batchpilot.airflow.remote import RemoteRunFollower, trigger_run
from batchpilot.pipeline import load_pipeline
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from tests.airflow.conftest import PIPELINES


class SilentThenDoneAirflow:
    """An Airflow API that does not answer ``silent_polls`` times, then reports success."""

    url = "http://127.0.0.1:1"

    def __init__(self, silent_polls: int) -> None:
        self.silent_polls = silent_polls
        self.polls = 0

    def trigger(self, dag_id: str, *, run_id: str, **_: Any) -> dict[str, Any]:
        return {"dag_run_id": run_id}

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        self.polls += 1
        if self.polls <= self.silent_polls:
            raise AirflowUnreachable(self.url, "no answer within 30s")
        return {"state": "success"}

    def task_instances(self, dag_id: str, run_id: str) -> list[Any]:
        return []


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


def follower_for(airflow: SilentThenDoneAirflow, tmp_path: Path, time: FakeTime):
    store = RunStore(f"sqlite:///{tmp_path / 'state.db'}")
    spec = load_pipeline(PIPELINES / "chain.yaml")
    run = trigger_run(airflow, store, spec, params={}, ds="2026-01-01")  # type: ignore[arg-type]
    follower = RemoteRunFollower(
        airflow,  # type: ignore[arg-type]
        store,
        run,
        poll_s=10,
        sleep=time.sleep,
        clock=time.clock,
        unreachable_grace_s=120,
    )
    return follower, store, run.run_id


def test_a_few_unanswered_polls_are_waited_out(tmp_path: Path) -> None:
    airflow, time = SilentThenDoneAirflow(silent_polls=5), FakeTime()
    follower, store, run_id = follower_for(airflow, tmp_path, time)
    assert follower.follow() is RunStatus.SUCCESS
    assert store.get_run(run_id).status is RunStatus.SUCCESS
    assert time.now == 50  # five polls of 10 s without an answer


def test_silence_longer_than_the_grace_period_gives_up(tmp_path: Path) -> None:
    airflow, time = SilentThenDoneAirflow(silent_polls=1000), FakeTime()
    follower, _, _ = follower_for(airflow, tmp_path, time)
    with pytest.raises(AirflowUnreachable, match="no answer within 30s"):
        follower.follow()
    assert 120 <= time.now < 130
