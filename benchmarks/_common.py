"""Helpers shared by the benchmark scripts (not a benchmark itself).

Scratch files live under ``<repo>/.bench/`` (gitignored), never under /tmp:
file creation in /tmp on the reference machine is ~15x slower than under
/work and would distort every number. Competitors are installed into their
own virtual environments under ``.bench/`` so the project venv stays clean.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"


def byte_compile_sources() -> None:
    """Byte-compile batchpilot's sources, as installing its wheel would.

    The checkout is installed in editable mode; where PYTHONDONTWRITEBYTECODE is
    set, every subprocess would otherwise recompile ~60 modules (~0.15 s) at start.
    """
    import compileall

    compileall.compile_dir(REPO / "src", quiet=1)


byte_compile_sources()

#: exit codes shared by every script
EXIT_OK, EXIT_TARGET_MISSED, EXIT_BROKEN = 0, 1, 2

_STARTED = time.perf_counter()


def scratch(*parts: str) -> Path:
    """Return (and create) a folder under ``.bench/``."""
    path = BENCH.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def progress(message: str) -> None:
    """Print a progress line with the seconds elapsed since the script started."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", flush=True)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


class BenchmarkBroken(RuntimeError):
    """A measurement could not be trusted (wrong row count, failed run): exit loudly."""


def ensure_venv(name: str, requirements: Sequence[str], check_import: str, version: str) -> Path:
    """Create ``.bench/<name>`` with ``requirements`` pinned, unless it already has them.

    ``check_import`` is the module whose ``__version__`` must equal ``version``.
    Returns the venv's python. Never touches the project venv.
    """
    venv = BENCH / name
    python = venv / "bin" / "python"
    probe = f"import {check_import}; print({check_import}.__version__)"
    if python.exists():
        found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == version:
            return python
    progress(f"creating {venv} with {' '.join(requirements)} (about a minute, once)")
    base = getattr(sys, "_base_executable", None) or sys.executable
    BENCH.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    log = BENCH / f"{name}-install.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *requirements],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise BenchmarkBroken(f"pip install {' '.join(requirements)} failed; see {log}")
    return python


@dataclass
class ProcessRun:
    """What :func:`run_measured` saw of one subprocess."""

    wall_s: float
    peak_rss: int
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        """The last stdout line parsed as JSON (the worker protocol of these scripts)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if self.returncode != 0 or not lines:
            raise BenchmarkBroken(f"worker failed (exit {self.returncode}):\n{self.stderr[-3000:]}")
        return json.loads(lines[-1])


#: runs the command given after the result path; writes its wall time and peak RSS there.
#: RUSAGE_CHILDREN of this fresh wrapper covers only the measured command and its descendants.
_WRAPPER = """\
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
with open(sys.argv[1], "w") as out:
    json.dump({"wall": wall, "peak": peak, "code": code}, out)
sys.exit(code)
"""


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> ProcessRun:
    """Run ``cmd``; return its wall time and peak RSS.

    A tiny wrapper process starts ``cmd`` and reads ``getrusage(RUSAGE_CHILDREN)``
    when it ends: ``ru_maxrss`` is the kernel's exact high-water mark of the
    largest process in the command's tree (no polling, so no CPU is stolen
    from the measured process on this 2-core machine). The wall time is
    measured inside the wrapper, around the command only.
    stderr goes to ``log`` if given (kept for post-mortems), else to a scratch file.
    """
    full_env = {**os.environ, **(env or {})}
    err_path = log or (BENCH / f"last-stderr-{os.getpid()}.log")
    err_path.parent.mkdir(parents=True, exist_ok=True)
    result_path = err_path.with_name(err_path.name + ".rusage.json")
    result_path.unlink(missing_ok=True)
    wrapper = [sys.executable, "-I", "-S", "-c", _WRAPPER, str(result_path), *cmd]
    with err_path.open("w+") as err:
        proc = subprocess.run(
            wrapper, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True
        )
        err.seek(0)
        stderr = err.read()
    try:
        measured = json.loads(result_path.read_text())
    except (OSError, ValueError):
        raise BenchmarkBroken(f"could not run {cmd[0]}:\n{stderr[-2000:]}") from None
    return ProcessRun(measured["wall"], measured["peak"], proc.returncode, proc.stdout, stderr)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain aligned table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                (c.rjust(w) if num else c.ljust(w))
                for c, w, num in zip(row, widths, numeric, strict=True)
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _is_number(text: str) -> bool:
    """True for cells like ``1.52``, ``83,406`` or ``9 MB`` (right-aligned)."""
    head = text.split(" ")[0].replace(",", "")
    try:
        float(head)
    except ValueError:
        return False
    return True


def mib(n_bytes: float) -> str:
    """Format a byte count in MiB."""
    return f"{n_bytes / 2**20:,.0f} MB"


class Targets:
    """Collects the target checks and prints one ``RATIO``/``TARGET`` line per target."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.missed = 0

    def check(
        self, name: str, value: float, op: str, target: float, unit: str = "x", kind: str = "RATIO"
    ) -> None:
        """Record ``name = value`` against ``op target`` (``>=`` or ``<=``)."""
        ok = value >= target if op == ">=" else value <= target
        self.missed += not ok
        shown = f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        if abs(value) < 1:
            shown = f"{value:.3f}"
        sep = "" if unit == "x" else " "
        self.lines.append(
            f"{kind} {name} = {shown}{sep}{unit} (target {op} {target:g}{sep}{unit}) "
            f"{'PASS' if ok else 'FAIL'}"
        )

    def report(self) -> int:
        """Print the target lines; return the script's exit code."""
        print()
        for line in self.lines:
            print(line, flush=True)
        return EXIT_TARGET_MISSED if self.missed else EXIT_OK
