"""The dashboard in a real browser (Debian's chromium driven by Playwright): log in, see
the failed run on the overview, open it, read the failing task's error and log, press
retry, and watch the run turn to success without the page reloading."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchpilot.store import RunStore
from batchpilot.store.tokens import TokenScope
from tests.conftest import REPO_ROOT
from tests.ui.conftest import Dashboard, day_clear_of_midnight

pytestmark = pytest.mark.browser

DOCS_SCREENSHOT = REPO_ROOT / "docs" / "dashboard-overview.png"
#: set (to anything) to refresh the README's screenshot; by default a run leaves it alone
UPDATE_DOCS_VARIABLE = "UPDATE_DOCS_SCREENSHOTS"
#: seconds a worker process has to start (a loaded machine) and finish the retried run
RETRY_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser(chromium_executable: Path) -> Iterator[object]:
    """A headless chromium for the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser tests need Playwright: pip install 'playwright==1.65.2' "
            "(pip install -e '.[test]')",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_executable), args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def test_a_failed_run_is_seen_read_retried_and_followed_to_success_live(
    browser: object,
    dashboard: Dashboard,
    make_token: Callable[[str, TokenScope], str],
    run_pipeline: Callable[..., str],
    run_store: RunStore,
    tmp_path: Path,
) -> None:
    day = day_clear_of_midnight()  # the overview read is this day's, across midnight too
    for _ in range(3):
        run_pipeline("sleepy", sleep_s=0.0)
    failed = run_pipeline("flaky", marker=str(tmp_path / "warehouse-ready"))
    assert run_store.get_run(failed).status.value == "failed"
    secret = make_token("browser-runner", TokenScope.RUN)

    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{dashboard.url}/")
    assert "/login" in page.url
    page.fill("#token", secret)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{dashboard.url}/")
    page.goto(f"{dashboard.url}/?day={day.isoformat()}")

    row = page.locator(f'tr[data-run="{failed}"]')
    assert row.get_attribute("data-verdict") == "failed"
    assert "❌ FAILED" in row.locator("td.state").inner_text()
    assert page.locator('[data-stat-value="failed"]').inner_text() == "1"
    page.wait_for_selector('#live-indicator[data-state="on"]')
    overview_shot = tmp_path / "dashboard-overview.png"
    page.screenshot(path=str(overview_shot), full_page=True)
    if not DOCS_SCREENSHOT.exists() or os.environ.get(UPDATE_DOCS_VARIABLE):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(overview_shot, DOCS_SCREENSHOT)

    row.locator(f'a[href="/runs/{failed}"]').click()
    page.wait_for_url(f"{dashboard.url}/runs/{failed}")
    task = page.locator('tr[data-task="load_warehouse"]')
    assert "❌ FAILED" in task.locator("td.state").inner_text()
    error = task.locator("td.task-error").inner_text()
    assert "warehouse not ready (first attempt fails on purpose)" in error
    log = page.locator("#log-load_warehouse-1 pre.log").inner_text()
    assert "the warehouse is not ready yet: failing on purpose" in log
    assert page.locator('g.node[data-node="load_warehouse"]').get_attribute("data-state") == (
        "failed"
    )
    failed_shot = tmp_path / "dashboard-run-failed.png"
    page.screenshot(path=str(failed_shot), full_page=True)

    page.click('button[data-action="retry"]')  # a form post; the page comes back once
    page.wait_for_url(f"{dashboard.url}/runs/{failed}")
    page.wait_for_selector('#live-indicator[data-state="on"]')
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector(
        '#run-status .run-state[data-status="success"]', timeout=RETRY_TIMEOUT_MS
    )
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert "✅ SUCCESS" in page.locator("#run-status-text").inner_text()
    assert page.locator('g.node[data-node="report"]').get_attribute("data-state") == "success"
    assert page.locator("#log-load_warehouse-2 pre.log").count() == 1
    success_shot = tmp_path / "dashboard-run-retried.png"
    page.screenshot(path=str(success_shot), full_page=True)
    context.close()
    print(
        f"screenshots: {overview_shot}, {failed_shot}, {success_shot} (kept after the "
        f"session with BATCHPILOT_KEEP_TEST_TMP=1); README's copy: {DOCS_SCREENSHOT} "
        f"(refreshed with {UPDATE_DOCS_VARIABLE}=1)"
    )
    assert run_store.get_run(failed).status.value == "success"
