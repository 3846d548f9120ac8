"""Warm workers: the supervisor forks each run's worker from a fork server that has the
engine imported, and keeps the guarantees of a fresh process per run (own process group,
crash isolation, output in the run's log file, the caller's settings)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from batchpilot.engine.queued import queue_checked_run
from batchpilot.scheduler.components import ServeContext, ServeOptions
from batchpilot.scheduler.dispatcher import RunDispatcher
from batchpilot.scheduler.supervisor import RunEnd, RunSupervisor
from batchpilot.scheduler.warm_workers import EXIT_LOST, start_fork_server
from batchpilot.scheduler.worker import EXIT_NOT_STARTED, EXIT_SUCCESS
from batchpilot.settings import Settings
from batchpilot.spec.loader import load_pipeline_file
from batchpilot.states import RunStatus, TaskState
from batchpilot.store import RunStore
from tests.waiting import wait_until

WAIT_S = 120.0

STEPS = '''
import os
import subprocess
import time
from pathlib import Path


def write_environment(params: dict) -> None:
    """Writes the variable the test set, as the worker sees it."""
    mark = os.environ.get("BATCHPILOT_WARM_TEST_MARK", "unset")
    Path(params["out"]).write_text(f"{mark}|{os.environ.get('BATCHPILOT_HOME')}")


def wait_with_a_child(params: dict) -> None:
    """Starts a child process, writes both process ids, and waits."""
    child = subprocess.Popen(["sleep", "300"])
    Path(params["out"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(300)
'''


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> Iterator[RunStore]:
    store = RunStore.for_home(home)
    yield store
    store.dispose()


@pytest.fixture
def supervisors() -> Iterator[Callable[..., RunSupervisor]]:
    """Makes supervisors, stopped (their workers killed) when the test ends."""
    made: list[RunSupervisor] = []

    def make(settings: Settings, **options: object) -> RunSupervisor:
        supervisor = RunSupervisor(settings, **options)  # type: ignore[arg-type]
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop(grace_s=5)


@pytest.fixture
def queue_step(
    tmp_path: Path, home: Path, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str], tuple[str, Path]]:
    """Queues a run of a one-node pipeline calling ``function`` of the steps module;
    returns the run id and the file the step writes."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    module = f"warm_steps_{tmp_path.name.replace('-', '_')}"  # one module name per test
    (folder / f"{module}.py").write_text(STEPS)
    monkeypatch.syspath_prepend(str(folder))

    def queue(run_id: str, function: str) -> tuple[str, Path]:
        out = tmp_path / f"{run_id}.out"
        document = {
            "name": f"warm_{function}",
            "params": {"out": str(out)},
            "nodes": [
                {"id": "a", "type": "python", "config": {"callable": f"{module}:{function}"}}
            ],
        }
        path = folder / f"{run_id}.yaml"
        path.write_text(yaml.safe_dump(document))
        spec = load_pipeline_file(path)
        settings = Settings(home=home)
        queue_checked_run(spec, settings=settings, store=store, run_id=run_id, ds="2024-01-01")
        return run_id, out

    return queue


def ends_of(supervisor: RunSupervisor, count: int) -> list[RunEnd]:
    """Poll until ``count`` workers ended."""
    ends: list[RunEnd] = []
    deadline = time.monotonic() + WAIT_S
    while len(ends) < count:
        assert time.monotonic() < deadline, f"only {ends} of {count} workers ended"
        supervisor.wait_for_end(0.5)
        ends += supervisor.poll()
    return ends


def gone(pid: int) -> bool:
    """True when process ``pid`` ended (a zombie nobody reaped yet counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def fork_server_pids() -> list[int]:
    """The multiprocessing fork servers this test process started."""
    pids = []
    for child in psutil.Process().children():
        try:
            command = " ".join(child.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):  # an earlier test's, not reaped yet
            continue
        if "multiprocessing.forkserver" in command:
            pids.append(child.pid)
    return pids


def test_a_warm_worker_drives_its_run_with_the_callers_settings_and_environment(
    home: Path, store: RunStore, queue_step, supervisors
):
    run_id, out = queue_step("env-run", "write_environment")
    environment = {**os.environ, "BATCHPILOT_WARM_TEST_MARK": "from the caller"}
    environment["BATCHPILOT_HOME"] = str(home.parent / "not-this-home")  # the settings win
    supervisor = supervisors(Settings(home=home), environment=environment)
    assert supervisor.submit(run_id)
    supervisor.poll()
    assert supervisor.pid_of(run_id) not in (None, os.getpid())
    assert ends_of(supervisor, 1) == [RunEnd(run_id, EXIT_SUCCESS)]
    assert store.get_run(run_id).status is RunStatus.SUCCESS
    assert out.read_text() == f"from the caller|{home}"
    assert not (home.parent / "not-this-home").exists()


def test_a_worker_of_a_caller_that_opened_the_store_skips_the_schema_check_and_runs(
    home: Path, store: RunStore, queue_step, supervisors
):
    run_id, out = queue_step("migrated-run", "write_environment")
    supervisor = supervisors(Settings(home=home), store_migrated=True)
    assert supervisor.submit(run_id)
    supervisor.poll()
    assert ends_of(supervisor, 1) == [RunEnd(run_id, EXIT_SUCCESS)]
    assert store.get_run(run_id).status is RunStatus.SUCCESS
    assert [t.state for t in store.get_tasks(run_id)] == [TaskState.SUCCESS]
    assert out.exists()


def test_a_worker_s_output_lands_in_the_run_s_log_file(home: Path, supervisors):
    supervisor = supervisors(Settings(home=home))
    supervisor.submit("no-such-run")
    supervisor.poll()
    assert ends_of(supervisor, 1) == [RunEnd("no-such-run", EXIT_NOT_STARTED)]
    log = (home / "serve" / "workers" / "no-such-run.log").read_text()
    assert log.startswith("worker: ") and "no-such-run" in log


def test_a_sigkilled_worker_ends_with_a_negative_code_and_the_next_run_still_runs(
    home: Path, store: RunStore, queue_step, supervisors
):
    settings = Settings(home=home)
    killed, started = queue_step("killed", "wait_with_a_child")
    after, _ = queue_step("after", "write_environment")
    supervisor = supervisors(settings, max_runs=1)
    supervisor.submit(killed)
    supervisor.submit(after)
    supervisor.poll()
    wait_until(started.exists, "the step to start", timeout_s=WAIT_S)
    worker_pid, child_pid = map(int, started.read_text().split())
    assert worker_pid == supervisor.pid_of(killed)
    os.kill(worker_pid, signal.SIGKILL)  # as the kernel's OOM killer does

    assert ends_of(supervisor, 1) == [RunEnd(killed, -signal.SIGKILL)]
    dispatcher = RunDispatcher(
        ServeContext(settings=settings, store=store), supervisor, dict, ServeOptions(home)
    )
    dispatcher.on_end(killed, -signal.SIGKILL)  # what serve does with the end
    assert store.get_run(killed).status is RunStatus.FAILED
    assert ends_of(supervisor, 1) == [RunEnd(after, EXIT_SUCCESS)]
    os.kill(child_pid, signal.SIGKILL)  # the step's child outlived its killed worker


def test_stop_terminates_the_workers_and_the_processes_their_steps_started(
    home: Path, store: RunStore, queue_step, supervisors
):
    run_id, started = queue_step("stopped", "wait_with_a_child")
    supervisor = supervisors(Settings(home=home))
    supervisor.submit(run_id)
    supervisor.poll()
    wait_until(started.exists, "the step to start", timeout_s=WAIT_S)
    worker_pid, child_pid = map(int, started.read_text().split())

    ends = supervisor.stop(grace_s=30)

    assert [end.run_id for end in ends] == [run_id] and supervisor.running == []
    assert gone(worker_pid) and gone(child_pid)
    run = store.get_run(run_id)
    assert run.status is RunStatus.FAILED and run.owner is None  # resumable
    assert f"batchpilot resume {run_id}" in (run.error or "")


def test_a_killed_fork_server_is_started_again_and_its_running_worker_still_followed(
    home: Path, store: RunStore, queue_step, supervisors
):
    settings = Settings(home=home)
    running, started = queue_step("running", "wait_with_a_child")
    supervisor = supervisors(settings)
    supervisor.submit(running)
    supervisor.poll()
    wait_until(started.exists, "the step to start", timeout_s=WAIT_S)
    worker_pid, child_pid = map(int, started.read_text().split())
    (server,) = fork_server_pids()

    os.kill(server, signal.SIGKILL)
    # not reaped: not ours to
    wait_until(lambda: gone(server), "the fork server to die", timeout_s=WAIT_S)

    assert supervisor.poll() == []  # its worker runs on, followed by its process id
    assert supervisor.running == [running] and not gone(worker_pid)
    later, _ = queue_step("later", "write_environment")
    supervisor.submit(later)
    supervisor.poll()
    assert fork_server_pids() not in ([], [server])
    assert ends_of(supervisor, 1) == [RunEnd(later, EXIT_SUCCESS)]
    assert store.get_run(later).status is RunStatus.SUCCESS

    assert supervisor.stop(grace_s=30) == [RunEnd(running, EXIT_LOST)]
    assert gone(worker_pid) and gone(child_pid)


def test_the_fork_server_serve_starts_first_thing_is_the_one_its_supervisor_forks_from(
    home: Path, queue_step, supervisors
):
    start_fork_server()  # what `batchpilot serve` does before it opens the store or the API
    (server,) = fork_server_pids()
    supervisor = supervisors(Settings(home=home))
    assert fork_server_pids() == [server]  # not a second one
    run_id, _ = queue_step("first", "write_environment")
    supervisor.submit(run_id)
    supervisor.poll()
    assert ends_of(supervisor, 1) == [RunEnd(run_id, EXIT_SUCCESS)]
    assert fork_server_pids() == [server]
