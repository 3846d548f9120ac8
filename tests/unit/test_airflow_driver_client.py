"""The test suite's client of its Airflow driver process (``tests/airflow/driver.py``):
a request the driver does not answer in time, or answers with an error, fails the test
that made it with a message saying so, and a hung driver is stopped, not waited for.

A stand-in driver (plain Python, no Airflow) speaks the same protocol."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest

from tests.airflow.driver import AirflowDriver

STAND_IN = """
import json, os, sys, time
print("importing", file=sys.stderr, flush=True)
print(json.dumps({"ready": "stand-in"}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if request["command"] == "echo":
        answer = {"result": {"args": request["args"], "home": request["env"]["HOME_OF_TEST"]}}
    elif request["command"] == "hang":
        print("hanging on purpose", file=sys.stderr, flush=True)
        time.sleep(600)
    elif request["command"] == "exit":
        sys.exit(3)
    else:
        answer = {"error": "Traceback: ValueError: no command " + request["command"]}
    print(json.dumps(answer), flush=True)
"""


@pytest.fixture
def driver(tmp_path: Path):
    script = tmp_path / "stand_in_driver.py"
    script.write_text(STAND_IN)
    environment = {**os.environ, "HOME_OF_TEST": str(tmp_path)}
    driver = AirflowDriver(
        Path(sys.executable), lambda: environment, tmp_path / "driver.log", script=script
    )
    yield driver
    driver.stop()


def test_requests_are_answered_in_turn_by_one_process(driver: AirflowDriver, tmp_path: Path):
    assert driver.request("echo", "a", {"b": 1}) == {"args": ["a", {"b": 1}], "home": str(tmp_path)}
    pid = driver.pid
    assert driver.request("echo", 2) == {"args": [2], "home": str(tmp_path)}
    assert driver.pid == pid


def test_a_request_left_unanswered_fails_with_the_log_and_stops_the_driver(driver: AirflowDriver):
    driver.request("echo")
    pid = driver.pid
    assert pid is not None

    with pytest.raises(pytest.fail.Exception) as failed:
        driver.request("hang", timeout=1)

    message = str(failed.value)
    assert "did not answer the request hang () within 1 s" in message
    assert "hanging on purpose" in message  # the end of the driver's log
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert driver.request("echo", "again")["args"] == ["again"]  # a new driver
    assert driver.pid != pid


def test_an_error_answer_fails_the_request_with_the_drivers_traceback(driver: AirflowDriver):
    with pytest.raises(pytest.fail.Exception, match="failed nonsense \\(\\):\nTraceback"):
        driver.request("nonsense")


def test_a_driver_that_exits_fails_the_request_with_its_exit_code(driver: AirflowDriver):
    with pytest.raises(pytest.fail.Exception, match=r"exited \(code 3\) during the request exit"):
        driver.request("exit")
