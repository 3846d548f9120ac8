"""Attempt logs shipped to a real S3-compatible server (moto on 127.0.0.1) and read back
through the engine's services, in this process."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from batchpilot import Pipeline, RunStatus, Task
from batchpilot.engine import RunService
from batchpilot.engine.log_shipping import remote_logs_of
from batchpilot.executors import default_executors
from batchpilot.remote_logs.chunks import LogChunks
from batchpilot.s3 import S3Endpoint, S3Url, s3_filesystem
from batchpilot.settings import Settings
from batchpilot.spec.model import PipelineSpec
from batchpilot.store import RunStore
from tests.s3_server import SECRET_ACCESS_KEY, S3Server


def _chatty_pipeline(lines: int = 3, *, fail: bool = False) -> PipelineSpec:
    def talk() -> None:
        for number in range(1, lines + 1):
            print(f"line {number} of {lines}")
        if fail:
            raise ValueError("the input has no header row")

    pipeline = Pipeline("chatty")
    pipeline.add_task(Task("talk", run=talk))
    return pipeline.to_spec()


def _service(home: Path, url: S3Url, endpoint: S3Endpoint) -> RunService:
    settings = Settings(home=home, logs_url=url, s3_endpoint=endpoint, logs_ship_interval_s=0.5)
    store = RunStore.for_home(settings.home, settings.database_url)
    return RunService(settings=settings, store=store, executors=default_executors())


@pytest.fixture
def endpoint(s3_server: S3Server, aws_env: dict[str, str]) -> S3Endpoint:
    return S3Endpoint(url=s3_server.endpoint, region="us-east-1")


def test_a_run_s_attempt_logs_land_in_the_bucket_whole(
    home: Path, s3_server: S3Server, bucket: str, endpoint: S3Endpoint
):
    service = _service(home, S3Url(bucket, "team/logs"), endpoint)
    result = service.start(_chatty_pipeline(fail=True))
    assert result.status is RunStatus.FAILED

    (log,) = service.read_logs(result.run_id)
    assert log.log_path is not None
    local = Path(log.log_path).read_bytes()
    shipped = s3_server.objects(f"{bucket}/team/logs/chatty/{result.run_id}/talk")
    folder = f"{bucket}/team/logs/chatty/{result.run_id}/talk/talk.attempt-1"
    assert shipped and all(path.startswith(folder + "/") for path in shipped)
    assert b"".join(shipped[path] for path in sorted(shipped)) == local
    assert b"line 3 of 3" in local and b"the input has no header row" in local


def test_logs_read_from_the_bucket_once_the_run_folder_is_gone_are_the_same(
    home: Path, bucket: str, endpoint: S3Endpoint
):
    service = _service(home, S3Url(bucket, ""), endpoint)
    run_id = service.start(_chatty_pipeline(lines=50)).run_id
    (before,) = service.read_logs(run_id, task="talk")
    shutil.rmtree(home / "runs" / run_id)

    (after,) = service.read_logs(run_id, task="talk")
    assert (after.text, after.next_offset) == (before.text, before.next_offset)
    assert "line 50 of 50" in after.text

    cut = before.text.index("line 20 of 50")  # ASCII: characters are bytes
    (rest,) = service.read_logs(run_id, task="talk", offset=cut)
    assert rest.text == before.text[cut:]
    (nothing_new,) = service.read_logs(run_id, offset=after.next_offset)
    assert (nothing_new.text, nothing_new.next_offset) == ("", after.next_offset)


def test_a_running_attempt_s_lines_are_shipped_before_it_ends(
    home: Path, s3_server: S3Server, bucket: str, endpoint: S3Endpoint
):
    printed, release = threading.Event(), threading.Event()

    def wait_after_printing() -> None:
        print("early line", flush=True)
        printed.set()
        release.wait(60)

    pipeline = Pipeline("waiter")
    pipeline.add_task(Task("hold", run=wait_after_printing))
    service = _service(home, S3Url(bucket, "p"), endpoint)
    runner = threading.Thread(target=service.start, args=(pipeline.to_spec(),))
    runner.start()
    try:
        assert printed.wait(60)
        shipped = _wait_for(lambda: s3_server.objects(f"{bucket}/p/waiter"), b"early line")
        assert b"early line" in b"".join(shipped.values())
        (run,) = service.list_runs()
        assert run.status is RunStatus.RUNNING  # shipped while the attempt still runs
    finally:
        release.set()
        runner.join(60)


def _wait_for(read, needle: bytes) -> dict[str, bytes]:
    for _ in range(600):  # a guard against a hang, not a timing assertion
        found = read()
        if needle in b"".join(found.values()):
            return found
        threading.Event().wait(0.05)
    raise AssertionError(f"{needle!r} never reached the bucket")


def test_an_unreachable_bucket_never_fails_the_run_and_says_so_without_the_secret(
    home: Path, aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
):
    with socket_that_refuses() as port:
        down = S3Endpoint(url=f"http://127.0.0.1:{port}", region="us-east-1")
        service = _service(home, S3Url("nowhere", "logs"), down)
        with caplog.at_level(logging.WARNING, logger="batchpilot.remote_logs"):
            result = service.start(_chatty_pipeline())
    assert result.status is RunStatus.SUCCESS
    (log,) = service.read_logs(result.run_id)
    assert "line 3 of 3" in log.text  # the local file is whole
    warnings = [r.getMessage() for r in caplog.records]
    assert any("could not ship attempt logs to s3://nowhere/logs" in w for w in warnings)
    assert all(SECRET_ACCESS_KEY not in w for w in warnings)


class socket_that_refuses:
    """A port nothing listens on (bound, never listening: connections are refused)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def test_chunks_read_in_offset_order_skip_overlaps_and_stop_at_a_gap(
    bucket: str, endpoint: S3Endpoint
):
    chunks = LogChunks(s3_filesystem(endpoint))
    whole = f"{bucket}/whole"
    chunks.put(whole, 0, b"abc")
    chunks.put(whole, 3, b"def")
    chunks.put(whole, 0, b"abcdefgh")  # the same file shipped again by a resumed process
    assert chunks.read(whole) == (b"abcdefgh", 8)
    assert chunks.read(whole, 4) == (b"efgh", 8)
    assert chunks.read(whole, 8) == (b"", 8)

    gap = f"{bucket}/gap"
    chunks.put(gap, 0, b"ab")
    chunks.put(gap, 5, b"xyz")  # bytes 2-4 not shipped (yet)
    assert chunks.read(gap) == (b"ab", 2)
    assert chunks.read(f"{bucket}/never") is None


def test_a_run_without_a_logs_url_never_loads_the_s3_client(tmp_path: Path):
    script = (
        "import sys\n"
        "from batchpilot import Pipeline, Task\n"
        "pipeline = Pipeline('quiet')\n"
        "pipeline.add_task(Task('hello', run=lambda: print('hello')))\n"
        "assert pipeline.run().status.value == 'success'\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pyarrow.fs', 'pyarrow._s3'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHPILOT_", "AWS_"))}
    env["BATCHPILOT_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_run_s_shipped_logs_can_be_deleted_whole_for_retention(
    home: Path, s3_server: S3Server, bucket: str, endpoint: S3Endpoint
):
    service = _service(home, S3Url(bucket, "logs"), endpoint)
    kept = service.start(_chatty_pipeline()).run_id
    gone = service.start(_chatty_pipeline()).run_id
    remote = remote_logs_of(service.settings)
    assert remote is not None
    remote.delete_run(pipeline="chatty", run_id=gone)
    remote.delete_run(pipeline="chatty", run_id="never-shipped")  # no error
    left = s3_server.objects(f"{bucket}/logs")
    assert left and all(f"/chatty/{kept}/" in path for path in left)
