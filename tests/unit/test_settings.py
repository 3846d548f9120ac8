"""Settings read from ``BATCHPILOT_*`` variables: what is accepted and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpilot.errors import BatchpilotError
from batchpilot.settings import DEFAULT_WORKERS, Settings


@pytest.mark.parametrize(("text", "workers"), [("1", 1), (" 8 ", 8), ("256", 256)])
def test_batchpilot_workers_from_1_to_256_is_used(tmp_path: Path, text: str, workers: int):
    settings = Settings.from_env({"BATCHPILOT_HOME": str(tmp_path), "BATCHPILOT_WORKERS": text})
    assert settings.workers == workers


@pytest.mark.parametrize("environ", [{}, {"BATCHPILOT_WORKERS": ""}])
def test_an_unset_or_empty_batchpilot_workers_means_the_default(tmp_path: Path, environ: dict):
    settings = Settings.from_env({"BATCHPILOT_HOME": str(tmp_path), **environ})
    assert settings.workers == DEFAULT_WORKERS == 4


@pytest.mark.parametrize("text", ["0", "-1", "257", "four", "2.5", "true"])
def test_batchpilot_workers_outside_1_to_256_is_an_error_not_silently_changed(
    tmp_path: Path, text: str
):
    with pytest.raises(BatchpilotError) as caught:
        Settings.from_env({"BATCHPILOT_HOME": str(tmp_path), "BATCHPILOT_WORKERS": text})
    assert str(caught.value) == (
        f"BATCHPILOT_WORKERS must be a whole number from 1 to 256, got {text!r}"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400.0), (" 12h ", 43200.0), ("1d12h", 129600.0)]
)
def test_batchpilot_retention_is_an_age_with_a_unit(tmp_path: Path, text: str, seconds: float):
    environ = {"BATCHPILOT_HOME": str(tmp_path), "BATCHPILOT_RETENTION": text}
    assert Settings.from_env(environ).retention_s == seconds
    assert Settings.from_env({"BATCHPILOT_HOME": str(tmp_path)}).retention_s is None


@pytest.mark.parametrize("text", ["30x", "-1d", "30", "200000d", "nan"])
def test_a_batchpilot_retention_that_is_no_age_is_refused_naming_it(tmp_path: Path, text: str):
    with pytest.raises(BatchpilotError) as caught:
        Settings.from_env({"BATCHPILOT_HOME": str(tmp_path), "BATCHPILOT_RETENTION": text})
    assert "BATCHPILOT_RETENTION" in str(caught.value) and repr(text) in str(caught.value)
