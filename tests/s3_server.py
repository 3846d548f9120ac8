"""A real S3-compatible server for the tests: moto in server mode on 127.0.0.1.

moto runs from its own virtual environment, ``<repo>/.venv-moto`` (gitignored),
created on first use with uv (~10 s, see ``tests/side_venvs.py``) and reused
while its probe passes. It is never mixed into the project's venv: moto needs
boto3, whose botocore pins python-dateutil below 3, and the project's venv holds
python-dateutil 4.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import side_venvs
from tests.process_guard import guard_process

REPO_ROOT = Path(__file__).resolve().parent.parent
MOTO_VERSION = "5.2.5"
MOTO_VENV = REPO_ROOT / ".venv-moto"
START_TIMEOUT_S = 60
#: what the tests' AWS variables hold; the secret key must never be printed
ACCESS_KEY_ID = "AKIATESTBATCHPILOT"
SECRET_ACCESS_KEY = "s3cr3t-Key-n3ver-Printed-7Qx"
REGION = "us-east-1"


def moto_python() -> Path:
    """The Python of the moto venv, created or repaired when its probe fails."""
    try:
        return side_venvs.build(MOTO_VENV, [f"moto[server]=={MOTO_VERSION}"], healthy=_healthy)
    except side_venvs.SideVenvError as exc:
        pytest.fail(
            f"{exc}. Fix: make sure the package registry is reachable, then delete "
            f"{MOTO_VENV} and run pytest again, or by hand: python3.11 -m venv .venv-moto && "
            f".venv-moto/bin/pip install 'moto[server]=={MOTO_VERSION}'",
            pytrace=False,
        )


def _healthy(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import moto.server, moto; print(moto.__version__)"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == MOTO_VERSION


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server at ``endpoint``."""

    endpoint: str

    def env(self) -> dict[str, str]:
        """The AWS variables a client of this server reads."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def filesystem(self):  # -> pyarrow.fs.S3FileSystem
        """A pyarrow client of the server, allowed to create buckets."""
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(
            endpoint_override=self.endpoint,
            access_key=ACCESS_KEY_ID,
            secret_key=SECRET_ACCESS_KEY,
            region=REGION,
            allow_bucket_creation=True,
        )

    def new_bucket(self) -> str:
        """Create a bucket no other test uses; its name."""
        name = f"bp-{uuid.uuid4().hex[:12]}"
        self.filesystem().create_dir(name)
        return name

    def objects(self, path: str) -> dict[str, bytes]:
        """Every object under ``bucket/prefix`` and its bytes, by path."""
        import pyarrow.fs

        fs = self.filesystem()
        selector = pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True)
        found = {}
        for info in fs.get_file_info(selector):
            if info.type is pyarrow.fs.FileType.File:
                with fs.open_input_stream(info.path) as stream:
                    found[info.path] = stream.read()
        return found


@contextmanager
def moto_server() -> Iterator[S3Server]:
    """moto's server on a free port of 127.0.0.1, stopped by process group on exit."""
    python = moto_python()
    port = _free_port()
    log = MOTO_VENV / f"server-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    guard_process(proc.pid)  # stopped below; and if pytest is killed
    try:
        deadline = time.monotonic() + START_TIMEOUT_S  # a hang guard, not a speed claim
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto's server did not start on port {port} (see {log})")
            time.sleep(0.1)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        with_group = proc.poll() is None
        if with_group:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.unlink(missing_ok=True)
