"""The catalog of pipeline files: changes noticed, last valid versions kept, snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchpilot.errors import SpecError
from batchpilot.scheduler.catalog import PipelineCatalog, PipelineNotFound
from batchpilot.settings import Settings
from tests.scheduler.conftest import write_pipeline


def touch_later(path: Path, text: str) -> None:
    """Rewrite ``path`` with a later mtime (file systems may keep coarse times)."""
    stat = path.stat()
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines"
    path.mkdir()
    return path


@pytest.fixture
def catalog(folder: Path, tmp_path: Path) -> PipelineCatalog:
    return PipelineCatalog(folder, settings=Settings(home=tmp_path / "home"))


def test_added_changed_and_removed_files_are_noticed(catalog, folder):
    first = write_pipeline(folder, "a", "0 * * * *")
    assert catalog.refresh().added == (first.resolve(),)
    assert not catalog.refresh()
    second = write_pipeline(folder, "b", "@daily")
    touch_later(first, first.read_text().replace("0 * * * *", "5 * * * *"))
    changes = catalog.refresh()
    assert changes.added == (second.resolve(),) and changes.changed == (first.resolve(),)
    assert catalog.get("a").schedule.cron == "5 * * * *"
    second.unlink()
    assert catalog.refresh().removed == (second.resolve(),)
    assert [s.name for s in catalog.scheduled()] == ["a"]


def test_an_invalid_edit_keeps_the_last_valid_version_and_records_the_error(catalog, folder):
    path = write_pipeline(folder, "a", "0 2 * * *")
    catalog.refresh()
    touch_later(path, path.read_text().replace("0 2 * * *", "0 25 * * *"))
    catalog.refresh()
    (entry,) = catalog.entries()
    assert entry.spec is not None and entry.spec.schedule.cron == "0 2 * * *"
    assert "hour field '25'" in entry.error and str(path.resolve()) in entry.error
    touch_later(path, path.read_text().replace("0 25 * * *", "0 3 * * *"))
    catalog.refresh()
    (entry,) = catalog.entries()
    assert entry.error is None and entry.spec.schedule.cron == "0 3 * * *"


def test_a_file_never_valid_is_listed_with_its_error_and_cannot_be_triggered(catalog, folder):
    (folder / "broken.yaml").write_text("name: broken\nnodes: [\n")
    catalog.refresh()
    (entry,) = catalog.entries()
    assert entry.spec is None and entry.name == "broken" and entry.error
    with pytest.raises(SpecError, match="pipeline 'broken' is invalid"):
        catalog.get("broken")
    with pytest.raises(PipelineNotFound, match="no pipeline named 'other'"):
        catalog.get("other")


def test_two_files_defining_one_name_the_second_is_an_error(catalog, folder):
    write_pipeline(folder, "a", "@daily")
    (folder / "z_copy.yaml").write_text((folder / "a.yaml").read_text())
    catalog.refresh()
    first, second = catalog.entries()
    assert first.spec is not None and second.spec is None
    assert "already defined in" in second.error


def test_a_snapshot_carries_the_last_valid_version_over_a_restart(folder, tmp_path):
    settings = Settings(home=tmp_path / "home")
    snapshot = tmp_path / "catalog.json"
    path = write_pipeline(folder, "a", "0 2 * * *")
    running = PipelineCatalog(folder, settings=settings)
    running.refresh()
    running.save_snapshot(snapshot)
    touch_later(path, path.read_text().replace("0 2 * * *", "not a cron"))
    restarted = PipelineCatalog(folder, settings=settings)
    restarted.seed_from_snapshot(snapshot)
    restarted.refresh()
    (entry,) = restarted.entries()
    assert entry.spec.schedule.cron == "0 2 * * *" and "not a cron" in entry.error
