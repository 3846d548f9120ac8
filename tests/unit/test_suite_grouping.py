"""The suite's own scheduling: every Airflow test that uses ``airflow standalone`` runs
on one xdist worker, every other Airflow test on one, and every browser test on one (they
share one chromium and one dashboard server per module).

Airflow tests share one ``airflow standalone`` (or one migrated ``dag.test()`` home);
split over workers, each worker starts its own, and the machine drowns (pytest 9.2 with
xdist 3.8 silently dropped the grouping, and CI took 20 minutes and flaked).
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


@pytest.fixture(scope="session")
def airflow_server():
    return "a stand-in for tests/airflow/conftest.py's server"


@pytest.mark.parametrize("i", range(6))
def test_probe(i, tmp_path_factory, FIXTURE):
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write("KIND " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""
#: kind of probe module: its marker, and the fixture its tests use
KINDS = {
    "airflow": ("airflow", "tmp_path"),
    "airflow-server": ("airflow", "airflow_server"),
    "browser": ("browser", "tmp_path"),
}


@pytest.mark.slow  # a pytest session with three xdist workers
def test_tests_so_marked_all_run_on_one_xdist_worker(tmp_path: Path) -> None:
    for kind, (marker, fixture) in KINDS.items():
        probe = PROBE.replace("MARKER", marker).replace("FIXTURE", fixture)
        (tmp_path / f"test_{kind.replace('-', '_')}_probe.py").write_text(
            probe.replace("KIND", kind)
        )
    out = tmp_path / "workers.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PROBE_OUT": str(out)}
    pytest_args = [
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.grouping",
        # plugins the probe tests do not use, and that took 4.5 of the 5 CPU seconds each
        # of the session's four pytest processes took to start
        *("-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:anyio"),
        "-o",
        "markers=airflow\nbrowser",
        f"--basetemp={tmp_path / 'basetemp'}",  # not the shared root, which pytest prunes
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "-n", "3", "--dist", "loadgroup", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: four interpreters start, slow on a loaded machine
    )
    assert done.returncode == 0, done.stdout + done.stderr
    workers: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for line in out.read_text().splitlines():
        kind, worker = line.split()
        workers[kind].append(worker)
    for kind, used in workers.items():
        assert len(used) == 6, (kind, used)
        assert len(set(used)) == 1, f"{kind} tests spread over workers {sorted(set(used))}"
