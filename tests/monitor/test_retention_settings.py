"""``retention:`` in the home's ``settings.yaml``: read by ``serve`` (which cleans daily with
it) and ``clean``; ``BATCHPILOT_RETENTION`` overrides its age; a bad value exits 2 naming the
file, the field and the value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from batchpilot.engine import RunService
from batchpilot.errors import SettingsFileError
from batchpilot.scheduler.components import ServeContext, ServeOptions
from batchpilot.scheduler.serve import RetentionLoop, ServeProcess
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore
from tests.cli_runner import Cli
from tests.monitor.test_monitor_cli import home_service  # noqa: F401 - a fixture


def write_settings(home: Path, body: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "settings.yaml"
    path.write_text(body)
    return path


def test_retention_is_read_from_the_home_and_the_variable_overrides_its_age(tmp_path: Path):
    write_settings(tmp_path, "retention: {older_than: 30d, keep_last: 5}\n")
    settings = Settings.from_env({"BATCHPILOT_HOME": str(tmp_path)})
    assert (settings.retention_s, settings.retention_keep_last) == (30 * 86400.0, 5)
    overridden = Settings.from_env({"BATCHPILOT_HOME": str(tmp_path), "BATCHPILOT_RETENTION": "7d"})
    assert (overridden.retention_s, overridden.retention_keep_last) == (7 * 86400.0, 5)


@pytest.mark.parametrize("body", [None, "", "# nothing yet\n"])
def test_no_file_or_an_empty_one_keeps_every_run(tmp_path: Path, body: str | None):
    if body is not None:
        write_settings(tmp_path, body)
    settings = Settings.from_env({"BATCHPILOT_HOME": str(tmp_path)})
    assert (settings.retention_s, settings.retention_keep_last) == (None, 0)


BAD = [
    ("retention: {older_than: 30x}\n", "retention.older_than", "'30x'"),
    ("retention: {older_than: 30}\n", "retention.older_than", "a unit is needed"),
    ("retention: {older_than: -1d}\n", "retention.older_than", "cannot be negative"),
    ("retention: {keep_last: 3}\n", "retention.older_than", "older_than: 30d"),
    ("retention: {older_than: 30d, keep_last: -1}\n", "retention.keep_last", "got -1"),
    ("retention: {older_than: 30d, keep_last: many}\n", "retention.keep_last", "got 'many'"),
    ("retention: {older_than: 30d, keep: 3}\n", "retention.keep", "unknown setting 'keep'"),
    ("retention: 30d\n", "retention", "got '30d'"),
    ("retension: {older_than: 30d}\n", "retension", "unknown section 'retension'"),
]


@pytest.mark.parametrize(("body", "field", "words"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_retention_is_refused_naming_file_field_and_value(
    tmp_path: Path, body: str, field: str, words: str
):
    path = write_settings(tmp_path, body)
    with pytest.raises(SettingsFileError) as caught:
        Settings.from_env({"BATCHPILOT_HOME": str(tmp_path)})
    assert (caught.value.path, caught.value.field) == (str(path), field)
    assert words in str(caught.value)


def test_serve_and_clean_exit_2_on_a_bad_retention(cli_in_process: Cli, home: Path, tmp_path: Path):
    path = write_settings(home, "retention: {older_than: soon}\n")
    for command in (["serve", "--pipelines", str(tmp_path)], ["clean", "--dry-run"]):
        result = cli_in_process(*command)
        assert result.code == 2, (command, result)
        assert str(path) in result.stderr and "field 'retention.older_than'" in result.stderr
        assert "'soon'" in result.stderr and "Traceback" not in result.stderr


def test_serve_cleans_daily_by_the_home_settings_keeping_the_last_runs(
    service: RunService,
    store: RunStore,
    settings: Settings,
    csv_pipeline: Callable[..., PipelineSpec],
    tmp_path: Path,
):
    write_settings(settings.home, "retention: {older_than: 0s, keep_last: 1}\n")
    written = Settings.from_env({"BATCHPILOT_HOME": str(settings.home)})
    settings = Settings(
        home=settings.home,
        database_url=settings.database_url,
        connections=settings.connections,
        retention_s=written.retention_s,
        retention_keep_last=written.retention_keep_last,
    )
    done = [service.start(csv_pipeline("daily")).run_id for _ in range(3)]
    process = ServeProcess(
        ServeOptions(pipelines=tmp_path), ServeContext(settings=settings, store=store)
    )
    [retention] = [c for c in process.components if isinstance(c, RetentionLoop)]
    assert retention.policy.older_than == timedelta(0) and retention.policy.keep_last == 1
    retention.step()
    assert [r.run_id for r in store.list_runs(pipeline="daily")] == [done[2]]


def test_clean_takes_its_age_and_keep_last_from_the_home_settings(
    cli_in_process: Cli,
    home: Path,
    home_service: RunService,  # noqa: F811 - the fixture
    csv_pipeline: Callable[..., PipelineSpec],
):
    done = [home_service.start(csv_pipeline("daily")).run_id for _ in range(3)]
    write_settings(home, "retention: {older_than: 0s, keep_last: 1}\n")
    preview = cli_in_process("clean", "--dry-run", "-o", "json")
    assert preview.code == 0, preview.stderr
    assert preview.json()["run_ids"] == done[:2]
