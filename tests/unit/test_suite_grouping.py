"""The suite's own scheduling: every Airflow test runs on one xdist worker, and every
browser test on one (they share one chromium and one dashboard server per module).

Airflow tests share one venv and one ``airflow standalone``; split over workers, each
worker installs and starts its own, and the machine drowns (pytest 9.2 with xdist 3.8
silently dropped the grouping, and CI took 20 minutes and flaked).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PROBE = """
import os
import pytest

pytestmark = pytest.mark.MARKER


@pytest.mark.parametrize("i", range(6))
def test_probe(i, tmp_path_factory):
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


@pytest.mark.parametrize("marker", ["airflow", "browser"])
def test_tests_so_marked_all_run_on_one_xdist_worker(tmp_path: Path, marker: str) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE.replace("MARKER", marker))
    out = tmp_path / "workers.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PROBE_OUT": str(out)}
    pytest_args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.conftest",
        "-o",
        f"markers={marker}",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "-n", "3", "--dist", "loadgroup", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers = out.read_text().split()
    assert len(workers) == 6
    assert len(set(workers)) == 1, f"{marker} tests spread over workers {sorted(set(workers))}"
