"""Attempt logs on S3-compatible storage (``BATCHPILOT_LOGS_URL=s3://bucket/prefix``).

While an attempt runs, its log file is shipped in chunks every
``logs_ship_interval_s`` (30 s by default) from one background thread per
process, and once more when it ends, so a ``kill -9`` loses at most one
interval of log. ``batchpilot logs`` reads the local file while it exists,
else the chunks (see :mod:`batchpilot.remote_logs.layout` for the objects'
names). The engine reaches this package only when a logs URL is set, so a run
without one never loads the S3 client.

Reading raises :class:`RemoteLogsError`; shipping never raises into a run.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from pathlib import Path

from batchpilot.errors import RemoteLogsError, first_line
from batchpilot.remote_logs.chunks import LogChunks
from batchpilot.remote_logs.layout import attempt_log_folder
from batchpilot.remote_logs.shipper import LogShipper, WatchedLog
from batchpilot.s3 import S3Endpoint, S3Url, s3_filesystem

#: how long the interpreter's exit waits for the last parts of ended logs
EXIT_FLUSH_S = 30.0

__all__ = ["EXIT_FLUSH_S", "RemoteLogs", "WatchedLog", "remote_logs_for"]


class RemoteLogs:
    """The attempt logs under one ``s3://`` URL: shipped while written, read back."""

    def __init__(self, url: S3Url, chunks: LogChunks, *, interval_s: float) -> None:
        self.url = url
        self.chunks = chunks
        self.shipper = LogShipper(chunks, interval_s=interval_s, destination=str(url))

    def ship(
        self,
        *,
        pipeline: str,
        run_id: str,
        task_id: str,
        path: Callable[[], Path],
        ready: Callable[[], bool] = lambda: True,
    ) -> WatchedLog:
        """Start shipping the log file ``path()`` gives (once ``ready()``); call
        :meth:`ended` with the result when the attempt has closed it."""

        def folder() -> str | None:
            if not ready():
                return None
            return attempt_log_folder(self.url, pipeline, run_id, task_id, str(path()))

        return self.shipper.watch(WatchedLog(folder=folder, path=path))

    def ended(self, log: WatchedLog) -> None:
        """The attempt closed its log: ship the rest without waiting for the interval."""
        self.shipper.ended(log)

    def flush(self, timeout_s: float = EXIT_FLUSH_S) -> bool:
        """Wait (at most ``timeout_s``) until the logs of ended attempts are shipped."""
        return self.shipper.flush(timeout_s)

    def read(
        self, *, pipeline: str, run_id: str, task_id: str, log_path: str, offset: int
    ) -> tuple[bytes, int]:
        """The shipped bytes of a log from ``offset`` on and the offset after them
        (no bytes when nothing was shipped). Raises :class:`RemoteLogsError` when the
        storage cannot be read."""
        folder = attempt_log_folder(self.url, pipeline, run_id, task_id, log_path)
        try:
            found = self.chunks.read(folder, offset)
        except OSError as exc:
            raise RemoteLogsError(
                f"cannot read the log of {task_id} in run {run_id} from {self.url}: "
                f"{first_line(exc)}"
            ) from exc
        return found if found is not None else (b"", offset)

    def measure_run(self, *, pipeline: str, run_id: str) -> tuple[int, int]:
        """How many log objects, and bytes, a run shipped. Raises :class:`RemoteLogsError`
        when the storage cannot be read."""
        try:
            return self.chunks.measure_folder(self.url.key(pipeline, run_id))
        except OSError as exc:
            raise RemoteLogsError(
                f"cannot list the logs of run {run_id} in {self.url}: {first_line(exc)}"
            ) from exc

    def delete_run(self, *, pipeline: str, run_id: str) -> None:
        """Delete every shipped log of a run (retention); nothing shipped is no error.
        Raises :class:`RemoteLogsError` when the storage refuses."""
        try:
            self.chunks.delete_folder(self.url.key(pipeline, run_id))
        except OSError as exc:
            raise RemoteLogsError(
                f"cannot delete the logs of run {run_id} from {self.url}: {first_line(exc)}"
            ) from exc


_by_target: dict[tuple[S3Url, S3Endpoint, float], RemoteLogs] = {}
_by_target_lock = threading.Lock()


def remote_logs_for(url: S3Url, endpoint: S3Endpoint, *, interval_s: float) -> RemoteLogs:
    """The process's one :class:`RemoteLogs` for this target (one shipping thread per
    target); the interpreter's exit waits up to :data:`EXIT_FLUSH_S` for its last chunks."""
    key = (url, endpoint, interval_s)
    with _by_target_lock:
        remote = _by_target.get(key)
        if remote is None:
            chunks = LogChunks(s3_filesystem(endpoint))
            remote = _by_target[key] = RemoteLogs(url, chunks, interval_s=interval_s)
            # registered after pyarrow's own exit hook, so it runs before the SDK shuts down
            atexit.register(_flush_at_exit, remote)
        return remote


def _flush_at_exit(remote: RemoteLogs) -> None:
    remote.flush(EXIT_FLUSH_S)
    remote.shipper.stop()
