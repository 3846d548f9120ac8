"""The dashboard's pages over real HTTP, against runs made by the real engine: the
overview's numbers are the monitor's aggregates, each links to the runs behind it; the
runs list filters and pages; the run page shows graph, errors and logs; the event
stream tells pages when runs change."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from batchpilot.monitor.overview import (
    DayOverview,
    day_window,
    load_overview,
    slots_still_due,
)
from batchpilot.pipeline import load_pipeline
from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.ui.conftest import Dashboard, day_clear_of_midnight, log_in


@pytest.fixture(scope="module")
def runs_day() -> date:
    """The day (UTC) the module's runs are made on: the tests read its overview, not the
    server's "today", so they pass across midnight."""
    return day_clear_of_midnight()


@pytest.fixture(scope="module")
def day_of_runs(
    dashboard: Dashboard,
    pipelines_dir: Path,
    runs_day: date,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[str]]:
    """Real runs of ``runs_day``: three quick ones of ``ui_sleepy``, then a slow one, and a
    failed run of ``ui_flaky``."""
    from batchpilot.engine import RunService
    from batchpilot.settings import Settings

    store = RunStore.for_home(dashboard.home)
    service = RunService(settings=Settings(home=dashboard.home), store=store)
    sleepy = load_pipeline(pipelines_dir / "sleepy.yaml")
    flaky = load_pipeline(pipelines_dir / "flaky.yaml")
    quick = [service.start(sleepy, params={"sleep_s": 0.0}).run_id for _ in range(3)]
    slow = [service.start(sleepy, params={"sleep_s": 3.0}).run_id]
    marker = tmp_path_factory.mktemp("marker") / "tried"
    failed = [service.start(flaky, params={"marker": str(marker)}).run_id]
    made_on = {store.get_run(r).created_at.astimezone(UTC).date() for r in quick + slow + failed}
    store.dispose()
    assert made_on == {runs_day}, f"the runs were made on {made_on}, not on {runs_day}"
    return {"quick": quick, "slow": slow, "failed": failed}


@pytest.fixture
def client(
    dashboard: Dashboard, make_token: Callable[[str, TokenScope], str]
) -> Iterator[httpx.Client]:
    """A client logged in with a read token."""
    secret = make_token(f"viewer-{datetime.now(UTC).timestamp()}", TokenScope.READ)
    with dashboard.client() as client:
        assert log_in(client, secret).status_code == 303
        yield client


def page_numbers(page: str) -> dict[str, str]:
    """The overview's numbers by name (``data-stat-value``)."""
    return dict(re.findall(r'data-stat-value="([a-z_]+)">([^<]*)<', page))


def links(page: str) -> dict[str, str]:
    """Each number's link by name (``data-stat``)."""
    return {
        name: html.unescape(href)
        for name, href in re.findall(r'data-stat="([a-z_]+)" href="([^"]+)"', page)
    }


def run_rows(page: str) -> list[str]:
    """The run ids of a runs table, in order."""
    return re.findall(r'<tr data-run="([^"]+)"', page)


def expected_overview(run_store: RunStore, pipelines_dir: Path, day: date) -> DayOverview:
    now = datetime.now(UTC)
    window = day_window(day, ZoneInfo("UTC"))  # the server's zone: the default
    specs = [load_pipeline(p) for p in sorted(pipelines_dir.glob("*.yaml"))]
    due = slots_still_due(specs, window, now)
    return load_overview(run_store, window, upcoming=len(due), now=now)


def test_the_overview_shows_the_monitors_numbers_of_today(
    client: httpx.Client,
    day_of_runs: dict[str, list[str]],
    run_store: RunStore,
    pipelines_dir: Path,
    runs_day: date,
) -> None:
    page = client.get("/", params={"day": runs_day.isoformat()})
    assert page.status_code == 200
    expected = expected_overview(run_store, pipelines_dir, runs_day)
    numbers = page_numbers(page.text)
    assert numbers == {
        "done": str(expected.done),
        "scheduled": str(expected.scheduled),
        "success_rate": f"{expected.success_rate * 100:.0f}%",
        "running": str(expected.running),
        "failed": str(expected.failed),
        "slow": str(expected.slow),
        "alerts": "0",
    }
    # what the store holds, said plainly: 5 runs ended, 1 failed, the 3 s one is slow
    assert expected.done == 5 and expected.failed == 1 and expected.success == 4
    assert expected.slow_run_ids() == day_of_runs["slow"]
    assert "No alerts." in page.text


def test_each_number_links_to_the_runs_behind_it(
    client: httpx.Client, day_of_runs: dict[str, list[str]], runs_day: date
) -> None:
    overview = client.get("/", params={"day": runs_day.isoformat()}).text
    targets = links(overview)
    assert targets["failed"] == f"/runs?day={runs_day.isoformat()}&status=failed"
    assert run_rows(client.get(targets["failed"]).text) == day_of_runs["failed"]
    assert run_rows(client.get(targets["slow"]).text) == day_of_runs["slow"]
    successes = run_rows(client.get(targets["success_rate"]).text)
    assert sorted(successes) == sorted(day_of_runs["quick"] + day_of_runs["slow"])
    assert len(run_rows(client.get(targets["jobs"]).text)) == 5
    assert run_rows(client.get(targets["running"]).text) == []


def test_the_jobs_table_shows_each_status_by_icon_and_word(
    client: httpx.Client, day_of_runs: dict[str, list[str]], runs_day: date
) -> None:
    page = client.get("/", params={"day": runs_day.isoformat()}).text
    verdicts = dict(re.findall(r'<tr data-run="([^"]+)" data-verdict="([a-z]+)">', page))
    assert verdicts[day_of_runs["failed"][0]] == "failed"
    assert verdicts[day_of_runs["slow"][0]] == "slow"
    assert {verdicts[r] for r in day_of_runs["quick"]} == {"ok"}
    assert "❌ FAILED" in page and "⚠️ SLOW" in page and "✅ OK" in page


def test_the_runs_list_filters_and_pages_with_a_cursor(
    client: httpx.Client, day_of_runs: dict[str, list[str]]
) -> None:
    everything = run_rows(client.get("/runs", params={"pipeline": "ui_sleepy"}).text)
    assert sorted(everything) == sorted(day_of_runs["quick"] + day_of_runs["slow"])
    first = client.get("/runs", params={"pipeline": "ui_sleepy", "limit": 3})
    older = re.search(r'<a rel="next" class="next-page" href="([^"]+)"', first.text)
    assert older is not None
    second = client.get(html.unescape(older.group(1)))
    assert run_rows(first.text) + run_rows(second.text) == everything
    assert 'rel="next"' not in second.text
    assert run_rows(client.get("/runs", params={"status": "failed"}).text) == day_of_runs["failed"]
    assert run_rows(client.get("/runs", params={"day": "2001-01-01"}).text) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "exploded"}, "status must be one of"),
        ({"day": "yesterday"}, "day must be YYYY-MM-DD"),
        ({"cursor": "not-a-cursor"}, "invalid page cursor"),
        ({"status": "failed' OR 1=1 --"}, "status must be one of"),
    ],
)
def test_bad_filter_values_get_a_400_page_naming_the_value(
    client: httpx.Client, params: dict[str, str], message: str
) -> None:
    response = client.get("/runs", params=params)
    assert response.status_code == 400
    assert message in html.unescape(response.text)


def test_a_filter_value_is_data_never_sql(
    client: httpx.Client, day_of_runs: dict[str, list[str]]
) -> None:
    response = client.get("/runs", params={"pipeline": "ui_sleepy' OR '1'='1"})
    assert response.status_code == 200
    assert run_rows(response.text) == []


def test_the_run_page_shows_the_graph_the_failing_tasks_error_and_its_log(
    client: httpx.Client, day_of_runs: dict[str, list[str]]
) -> None:
    (run_id,) = day_of_runs["failed"]
    page = client.get(f"/runs/{run_id}").text
    assert 'data-status="failed"' in page
    graph = re.search(r'<svg[^>]*class="graph".*?</svg>', page, re.S)
    assert graph is not None
    states = dict(re.findall(r'<g class="node" data-node="([^"]+)" data-state="([a-z_]+)">', page))
    assert states == {"extract_numbers": "success", "load_warehouse": "failed", "report": "skipped"}
    assert "❌ FAILED" in graph.group(0) and "✅ SUCCESS" in graph.group(0)
    assert 'data-from="extract_numbers" data-to="load_warehouse"' in graph.group(0)
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="gantt"' in page
    assert "warehouse not ready (first attempt fails on purpose)" in page
    log = re.search(
        r'<details class="attempt" id="log-load_warehouse-1".*?<pre class="log">(.*?)</pre>',
        page,
        re.S,
    )
    assert log is not None and "the warehouse is not ready yet" in log.group(1)
    assert re.search(r'data-action="retry"', page) and re.search(r'data-action="resume"', page)
    assert 'data-action="cancel"' not in page


def test_an_unknown_run_gets_a_404_page(client: httpx.Client) -> None:
    response = client.get("/runs/no-such-run")
    assert response.status_code == 404
    assert "no run has the id" in html.unescape(response.text)


def test_the_pipeline_page_shows_schedule_next_runs_and_charts_of_the_last_runs(
    client: httpx.Client, day_of_runs: dict[str, list[str]]
) -> None:
    page = client.get("/pipelines/ui_sleepy").text
    assert "every day at 03:00" in page
    assert len(re.findall(r"<li>\d{4}-\d\d-\d\d 03:00", page)) == 5
    assert page.count('class="bars"') == 2
    assert len(run_rows(page)) == 4
    assert 'name="param:sleep_s"' in page
    listing = client.get("/pipelines").text
    assert "/pipelines/ui_flaky" in listing and "/pipelines/ui_sleepy" in listing


def test_the_event_stream_announces_the_current_state_first(
    client: httpx.Client, day_of_runs: dict[str, list[str]]
) -> None:
    (run_id,) = day_of_runs["failed"]
    with client.stream("GET", "/ui/events", params={"run": run_id}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        seen = []
        for line in lines:
            seen.append(line)
            if line.startswith("data: "):
                break
    assert "event: change" in seen
