"""Cancel latency: how long a cancel takes to stop a busy task that never checks for it.

Usage::

    python benchmarks/cancel_latency.py [--reps R]

Each repetition starts ``batchpilot run`` in its own process on a pipeline whose
first task spins in pure Python forever (it never looks at a cancel flag), waits
until the store shows that task ``running``, then cancels the run through the
engine's service (``RunService.cancel``, what ``batchpilot cancel`` calls),
from this process, as another terminal would. The state store is SQLite under
``.bench/cancel/``.

Timed (medians of ``--reps``, default 3): from the cancel request to
``cancel`` returning the run ``cancelled`` (the task stopped, the next task
cancelled), and from the request to the run's process exiting. Checked (exit 2
if not): the run and both tasks end ``cancelled`` and the run's process exits 1.
Targets: cancelled within 1.5 s, the process gone within 3 s (the run looks for
a cancel every 0.5 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    EXIT_BROKEN,
    REPO,
    BenchmarkBroken,
    Targets,
    median,
    print_table,
    progress,
    scratch,
)

sys.path.insert(0, str(REPO / "src"))

from batchpilot.engine import RunService
from batchpilot.settings import Settings
from batchpilot.states import RunStatus
from batchpilot.store import RunStore

TARGET_CANCELLED_S = 1.5
TARGET_EXITED_S = 3.0
STEPS = """
def spin():
    while True:   # never checks for cancellation: the engine must stop it
        sum(range(1000))
"""
PIPELINE = """
name: busy
nodes:
  - {id: spin, type: python, config: {callable: "busy_steps:spin"}}
  - {id: after, type: empty, depends_on: [spin]}
"""


def wait_until_spinning(store: RunStore, proc: subprocess.Popen[bytes]) -> str:
    """The run's id, once its busy task is ``running``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkBroken(f"the run's process exited early ({proc.returncode})")
        runs = store.list_runs(limit=1)
        if runs:
            states = {t.task_id: t.state.value for t in store.get_tasks(runs[0].run_id)}
            if states.get("spin") == "running":
                return runs[0].run_id
        time.sleep(0.05)
    raise BenchmarkBroken("the busy task never started")


def one_cancel(folder: Path) -> tuple[float, float]:
    """Seconds from the cancel request to the run cancelled, and to its process gone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "busy_steps.py").write_text(STEPS)
    (folder / "busy.yaml").write_text(PIPELINE)
    home = folder / "home"
    env = {**os.environ, "BATCHPILOT_HOME": str(home), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchpilot", "run", str(folder / "busy.yaml"), "-q"],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = Settings(home=home)
    store = RunStore.for_home(home)
    try:
        run_id = wait_until_spinning(store, proc)
        asked = time.perf_counter()
        result = RunService(settings=settings, store=store).cancel(run_id)
        cancelled_s = time.perf_counter() - asked
        code = proc.wait(timeout=60)
        exited_s = time.perf_counter() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
        store.dispose()
    states = {tid: t.state.value for tid, t in result.tasks.items()}
    if result.status is not RunStatus.CANCELLED or set(states.values()) != {"cancelled"}:
        raise BenchmarkBroken(f"run {result.status.value}, tasks {states}")
    if code != 1:
        raise BenchmarkBroken(f"the run's process exited {code}, not 1")
    return cancelled_s, exited_s


def run(reps: int) -> int:
    """Measure ``reps`` cancels; print the table and target lines."""
    root = scratch("cancel")
    samples = []
    for rep in range(reps):
        cancelled_s, exited_s = one_cancel(root / f"rep-{rep}")
        progress(f"rep {rep + 1}: cancelled in {cancelled_s:.2f} s, exited in {exited_s:.2f} s")
        samples.append((cancelled_s, exited_s))
    cancelled = median([c for c, _ in samples])
    exited = median([e for _, e in samples])
    print()
    print_table(
        ["from the cancel request to", "median s", "max s"],
        [
            ["run cancelled (cancel returns)", f"{cancelled:.2f}",
             f"{max(c for c, _ in samples):.2f}"],
            ["run's process exited", f"{exited:.2f}", f"{max(e for _, e in samples):.2f}"],
        ],
    )  # fmt: skip
    targets = Targets()
    targets.check("cancel_to_cancelled_s", cancelled, "<=", TARGET_CANCELLED_S, "s", "TARGET")
    targets.check("cancel_to_process_exit_s", exited, "<=", TARGET_EXITED_S, "s", "TARGET")
    return targets.report()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    try:
        return run(max(1, args.reps))
    except BenchmarkBroken as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
