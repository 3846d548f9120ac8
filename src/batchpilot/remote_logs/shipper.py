"""Ships growing log files to storage from one background thread.

Every ``interval_s`` (and at once when an attempt ends) the thread reads what
each watched log file gained since its last shipment and stores it as one
chunk. The attempt never waits for it: a slow or unreachable storage delays
only this thread. A failed shipment is tried again at the next interval from
the same offset, so nothing is lost or stored twice; it never reaches the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchpilot.errors import first_line
from batchpilot.remote_logs.chunks import LogChunks

#: the most one chunk holds; a log that grew more is shipped as several chunks
MAX_CHUNK_BYTES = 8 * 1024 * 1024

_logger = logging.getLogger("batchpilot.remote_logs")


@dataclass(eq=False)
class WatchedLog:
    """A log file being shipped.

    ``folder`` gives its folder in the storage, or None while it must not be
    shipped (an attempt that started early and has not really begun; if it ends
    that way it is dropped). ``path`` gives its current local path (an early
    attempt's file is renamed when it begins).
    """

    folder: Callable[[], str | None]
    path: Callable[[], Path]
    shipped: int = 0
    ended: bool = False
    #: shipments tried since it ended (a flush waits for one)
    tries_after_end: int = 0


class LogShipper:
    """Ships the logs it watches every ``interval_s`` seconds, on a daemon thread
    started with the first one."""

    def __init__(
        self,
        chunks: LogChunks,
        *,
        interval_s: float,
        destination: str,
        warn: Callable[[str], None] = _logger.warning,
    ) -> None:
        self.chunks = chunks
        self.interval_s = interval_s
        self.destination = destination
        self._warn = warn
        self._logs: list[WatchedLog] = []
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._failing = False

    def watch(self, log: WatchedLog) -> WatchedLog:
        """Ship ``log`` from now on, until :meth:`ended` and fully shipped."""
        with self._changed:
            self._logs.append(log)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._ship_forever, name="batchpilot-log-shipper", daemon=True
                )
                self._thread.start()
        return log

    def ended(self, log: WatchedLog) -> None:
        """Nothing more will be written to ``log``: ship the rest now (on the thread)."""
        with self._changed:
            log.ended = True
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every ended log had its last part shipped once (or that try
        failed), at most ``timeout_s``; True when none is left waiting. Logs still
        being written are not waited for."""
        self._wake.set()
        with self._changed:
            return self._changed.wait_for(
                lambda: all(not log.ended or log.tries_after_end for log in self._logs),
                timeout=timeout_s,
            )

    def stop(self) -> None:
        """Ship nothing more (the interpreter exits)."""
        with self._changed:
            self._stopped = True
        self._wake.set()

    def ship_once(self) -> None:
        """Ship what every watched log gained; forget the ended ones fully shipped."""
        with self._changed:
            logs = list(self._logs)
        for log in logs:
            ended = log.ended  # read first: what is shipped after it is the whole log
            done = self._ship(log, ended=ended)
            with self._changed:
                if ended:
                    log.tries_after_end += 1
                if done:
                    self._logs.remove(log)
                self._changed.notify_all()

    def _ship_forever(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopped:
                return
            try:
                self.ship_once()
            except Exception as exc:  # a bug must not end the shipping, nor reach a run
                self._warn(f"shipping attempt logs to {self.destination} failed: {exc!r}")

    def _ship(self, log: WatchedLog, *, ended: bool) -> bool:
        """Ship what ``log`` gained; True when it needs no more shipping."""
        folder = log.folder()
        if folder is None:
            return ended  # an early attempt that never began: nothing to keep
        try:
            while True:
                try:
                    data = _read_from(log.path(), log.shipped)
                except OSError:
                    return ended  # its run folder was removed: nothing left to ship
                if not data:
                    break
                self.chunks.put(folder, log.shipped, data)
                log.shipped += len(data)
        except OSError as exc:  # storage unreachable, refused, out of space…
            if not self._failing:
                self._failing = True
                self._warn(
                    f"could not ship attempt logs to {self.destination} (trying again every "
                    f"{self.interval_s:g}s; the local log files are complete): {first_line(exc)}"
                )
            return False
        if self._failing:
            self._failing = False
            self._warn(f"shipping attempt logs to {self.destination} works again")
        return ended


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(MAX_CHUNK_BYTES)
