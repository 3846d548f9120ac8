"""Whether a run's recorded owner (``host:pid:token``) is gone: a process of this host
that exited, including one that exited and was not collected yet; never a process of
another host, which only its heartbeat can tell."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from batchpilot.engine.ownership import owner_id, owner_is_dead
from tests.waiting import wait_until

HOST = socket.gethostname()


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_a_running_process_is_alive_and_this_one_too():
    with subprocess.Popen(["sleep", "60"]) as child:
        try:
            assert not owner_is_dead(f"{HOST}:{child.pid}:t")
        finally:
            child.kill()
    assert not owner_is_dead(owner_id())


def test_an_exited_process_is_dead_once_collected_and_already_before():
    child = subprocess.Popen(["sleep", "60"])
    child.kill()  # not collected yet: the pid still exists, as a zombie
    wait_until(lambda: _state(child.pid) == "Z", "the killed child becoming a zombie")
    assert owner_is_dead(f"{HOST}:{child.pid}:t")
    child.wait()
    assert owner_is_dead(f"{HOST}:{child.pid}:t")


def test_another_hosts_process_or_no_owner():
    assert not owner_is_dead("some-other-host:1:t")  # its heartbeat decides
    assert owner_is_dead(None) and owner_is_dead("")
