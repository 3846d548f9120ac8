"""Virtual environments beside the project's (``.venv-airflow``, ``.venv-moto``), built
with uv.

uv (pinned in the test extras) resolves and installs the same packages as pip, from
the same registry, in seconds instead of minutes: on a 2-core machine Airflow's
140 packages took pip 239 s and uv 12 s; moto's 161 s and 12 s. It reads the TLS
certificates of the platform's store (``--system-certs``; SSL_CERT_FILE is honoured
too) and, like pip, writes the bytecode of what it installs (``--compile-bytecode``).

pytest-xdist workers may all want a venv at once on a fresh clone: the first builds
it while the others wait on a lock file, then find it healthy.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class SideVenvError(Exception):
    """A side venv could not be built; the message says what failed and where its log is."""


@contextmanager
def build_lock(venv: Path) -> Iterator[None]:
    """Hold ``<venv>.lock`` (beside the venv) while one process builds the venv."""
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def uv_binary() -> str:
    """The uv executable of the test extras."""
    try:
        from uv import find_uv_bin
    except ImportError as exc:
        raise SideVenvError(
            "the test extras' uv is missing from this venv: pip install -e '.[test]'"
        ) from exc
    return find_uv_bin()


def build(
    venv: Path,
    requirements: Sequence[str],
    healthy: Callable[[Path], bool],
    stamp: str | None = None,
) -> Path:
    """The Python of ``venv`` once ``healthy`` accepts it, creating it and installing
    ``requirements`` (pip requirement arguments, ``-e PATH`` included) when it does not.

    ``stamp``, when given, is written to ``<venv>/.batchpilot-stamp`` after the install
    (for a ``healthy`` that tells when the venv is out of date).

    Raises :class:`SideVenvError` when the install fails or leaves the venv unhealthy.
    """
    python = venv / "bin" / "python"
    if healthy(python):
        return python
    with build_lock(venv):
        if healthy(python):  # another worker built it while this one waited
            return python
        if not python.exists():
            base = getattr(sys, "_base_executable", None) or sys.executable
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
        log = venv / "batchpilot-install.log"
        command = [
            uv_binary(),
            "pip",
            "install",
            "--python",
            str(python),
            "--system-certs",
            # as pip does: where PYTHONDONTWRITEBYTECODE is set (CI), every Airflow process
            # would otherwise compile its imports again (airflow imports 1.6x slower)
            "--compile-bytecode",
        ]
        with log.open("a") as out:
            # One resolver run for all requirements, so a conflict between their pins is
            # reported, not hidden.
            done = subprocess.run([*command, *requirements], stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise SideVenvError(f"could not install {' '.join(requirements)} (see {log})")
        if stamp is not None:
            (venv / ".batchpilot-stamp").write_text(stamp)
        if not healthy(python):
            raise SideVenvError(
                f"the install of {' '.join(requirements)} left {venv} unusable (see {log})"
            )
    return python
