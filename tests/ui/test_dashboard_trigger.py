"""Triggering a run from the pipeline page over real HTTP: the parameters are typed and
checked as ``batchpilot trigger`` checks them, and a worker process executes the run."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.ui.conftest import Dashboard, log_in


def test_a_run_token_triggers_a_run_with_parameters_that_a_worker_executes(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str], run_store: RunStore
) -> None:
    secret = make_token("trigger-runner", TokenScope.RUN)
    with dashboard.client() as client:
        log_in(client, secret)
        form = client.get("/pipelines/ui_sleepy").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        response = client.post(
            "/pipelines/ui_sleepy/trigger",
            data={"csrf": csrf.group(1), "date": "2026-11-30", "param:sleep_s": "0.1"},
        )
        assert response.status_code == 303
        run_id = response.headers["location"].removeprefix("/runs/")
        run = run_store.get_run(run_id)
        assert run.params == {"sleep_s": 0.1} and run.ds == "2026-11-30"
        assert "queued run" in client.get(response.headers["location"]).text
        with client.stream("GET", "/ui/events", params={"run": run_id}) as stream:
            for line in stream.iter_lines():  # a change event per step, up to the end
                if line.startswith("data: ") and run_store.get_run(run_id).status.is_terminal():
                    break
    assert run_store.get_run(run_id).status.value == "success"


def test_a_trigger_with_a_bad_parameter_records_nothing_and_says_why(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str], run_store: RunStore
) -> None:
    secret = make_token("trigger-typo", TokenScope.RUN)
    before = len(run_store.list_runs(limit=1000))
    with dashboard.client() as client:
        log_in(client, secret)
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/pipelines/ui_sleepy").text)
        assert csrf is not None
        response = client.post(
            "/pipelines/ui_sleepy/trigger",
            data={"csrf": csrf.group(1), "param:sleep_s": "soon", "param:nope": "1"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/pipelines/ui_sleepy"
        page = html.unescape(client.get("/pipelines/ui_sleepy").text)
        assert "not triggered:" in page and "nope" in page
    assert len(run_store.list_runs(limit=1000)) == before
