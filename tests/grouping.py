"""The suite's own scheduling on pytest-xdist workers: which tests share a worker.

A plugin of its own (standard library and pytest only), registered by
``tests/conftest.py``, so ``tests/unit/test_suite_grouping.py`` loads it into a pytest
session of probe tests without the suite's fixtures and what they import.
"""

from __future__ import annotations

import os

import pytest

#: the session fixture that starts ``airflow standalone`` (tests/airflow/conftest.py)
AIRFLOW_SERVER_FIXTURE = "airflow_server"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that share one ``airflow standalone`` run on one xdist worker, the other
    Airflow tests (one migrated ``dag.test()`` home) on one worker, and so do the browser
    tests (one chromium) (``make test`` runs the suite with ``--dist loadgroup``). The two
    Airflow groups run side by side; the Airflow venv they share is built once, under a
    lock (``tests/side_venvs.py``).

    ``tryfirst``: xdist reads the group marks in its own hook of the same name, so they
    must be there before it runs. pytest is pinned below 9.2, whose node ids xdist 3.8
    can no longer suffix with a group: every worker then started its own Airflow.
    ``tests/unit/test_suite_grouping.py`` checks the grouping holds.

    On an xdist worker, ``slow`` tests come first: xdist hands out the groups, largest
    first, then single tests in collection order, so a long end-to-end test collected
    last would run alone at the end (a plain run keeps each module's tests together)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if item.get_closest_marker("airflow"):
            uses_server = AIRFLOW_SERVER_FIXTURE in getattr(item, "fixturenames", ())
            group = "airflow-server" if uses_server else "airflow"
            item.add_marker(pytest.mark.xdist_group(group))
        elif item.get_closest_marker("browser"):  # one chromium, one dashboard server
            item.add_marker(pytest.mark.xdist_group("browser"))
