"""The engine's one door to shipped logs (``BATCHPILOT_LOGS_URL``).

Without a logs URL in the settings the storage client (pyarrow's S3
filesystem, the AWS SDK) is never loaded: an attempt's log stays a local file
only. With one, each attempt that writes its own log file is shipped while it
runs and once more when it ends (see :mod:`batchpilot.remote_logs`), and a
log whose local file is gone is read back from the storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from batchpilot.engine.context import RunContext
from batchpilot.engine.handles import AttemptHandle
from batchpilot.remote_logs import RemoteLogs, remote_logs_for
from batchpilot.settings import Settings

#: how long a run's end waits for its attempts' last log lines to be shipped
RUN_END_FLUSH_S = 30.0


def remote_logs_of(settings: Settings) -> RemoteLogs | None:
    """The shipped logs the settings name, or None (logs stay on this machine)."""
    if settings.logs_url is None:
        return None
    return remote_logs_for(
        settings.logs_url, settings.s3_endpoint, interval_s=settings.logs_ship_interval_s
    )


_NOT_SHIPPED = nullcontext()


def shipped_log(
    run: RunContext, handle: AttemptHandle, *, own_file: bool
) -> AbstractContextManager[None]:
    """Ship the attempt's log file while the block runs and once more after it
    (``own_file``: it writes one; an Airflow worker's task log is Airflow's to ship)."""
    remote = remote_logs_of(run.settings) if own_file else None
    if remote is None:
        return _NOT_SHIPPED
    return _shipping(run, handle, remote)


@contextmanager
def _shipping(run: RunContext, handle: AttemptHandle, remote: RemoteLogs) -> Iterator[None]:
    go = handle.go
    log = remote.ship(
        pipeline=run.spec.name,
        run_id=run.run_id,
        task_id=handle.task_id,
        path=lambda: handle.log_path,
        ready=lambda: go is None or go.is_set(),  # an early attempt ships once it begins
    )
    try:
        yield
    finally:
        remote.ended(log)


def flush_shipped_logs(settings: Settings, timeout_s: float = RUN_END_FLUSH_S) -> None:
    """Wait (at most ``timeout_s``) until the logs of ended attempts are shipped; a
    storage that is down costs one failed try, never the run."""
    remote = remote_logs_of(settings)
    if remote is not None:
        remote.flush(timeout_s)
