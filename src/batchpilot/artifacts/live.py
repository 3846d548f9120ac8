"""A task's main output while its attempt still writes it, for a consumer that starts early.

The writer (:meth:`ArtifactStore.write_batches`) appends record batches to the
artifact's partial file and announces, after each one, how many bytes are
complete. A follower reads the same file as an Arrow IPC stream and blocks at
its end until more is written, so it works on the first batches while the
writer parses the next ones. The engine ends the output: :meth:`finish` (the
attempt returned; the artifact is final) or :meth:`abandon` (it failed or was
stopped), which the follower sees as an :class:`ArtifactError`.

A follower never reads a batch the writer has not completely written, and a
stream ends only where the writer closed it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from batchpilot.artifacts import ArtifactRef, iter_batches, read_schema
from batchpilot.errors import ArtifactError

#: an Arrow IPC file is "ARROW1" and two padding bytes, then the stream format, then a footer
_FILE_MAGIC_BYTES = 8
#: how often a waiting follower looks at its cancel event
_POLL_S = 0.1


class LiveOutput:
    """The main output of one attempt of ``task_id``, as it is being written."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._changed = threading.Condition()
        self._partial: str | None = None
        self._written = 0
        self._complete = False
        self._ended = False
        self._abandoned = False
        self._ref: ArtifactRef | None = None
        self._placed: str | None = None

    # -- the writer -------------------------------------------------------------------------

    def begin(self, partial: Path) -> bool:
        """The writer created ``partial``; False if this output was begun before (a step
        that writes its output twice spoils the stream: it is abandoned)."""
        with self._changed:
            if self._partial is not None or self._ended:
                self._abandon_locked()
                return False
            self._partial = str(partial)
            self._changed.notify_all()
            return True

    def wrote(self, size: int, *, complete: bool = False) -> None:
        """The first ``size`` bytes of the partial file are whole IPC messages;
        ``complete`` once the writer closed the file."""
        with self._changed:
            self._written = size
            self._complete = complete
            self._changed.notify_all()

    def placed(self, path: Path) -> None:
        """The complete file was renamed from its partial name to ``path``."""
        with self._changed:
            self._placed = str(path)
            self._changed.notify_all()

    # -- the engine -------------------------------------------------------------------------

    def finish(self, ref: ArtifactRef | None) -> None:
        """The attempt returned ``ref`` as its output (None: it wrote none)."""
        with self._changed:
            self._ended = True
            self._ref = ref
            if ref is not None and self._partial is not None and not self._complete:
                self._abandon_locked()  # returned an output other than the one it streamed
            self._changed.notify_all()

    def abandon(self) -> None:
        """The attempt failed or was stopped: followers stop with an error."""
        with self._changed:
            self._abandon_locked()

    def _abandon_locked(self) -> None:
        self._ended = True
        self._abandoned = True
        self._changed.notify_all()

    # -- followers --------------------------------------------------------------------------

    def follow(self, cancel: threading.Event) -> tuple[pa.Schema, Iterator[pa.RecordBatch]] | None:
        """The output's schema and batches, each as soon as it is written.

        Waits until the writer begins (or the attempt ends without streaming: then
        the finished artifact is read). Returns None if the attempt wrote no output.
        Raises :class:`ArtifactError` if the attempt is abandoned or ``cancel`` is
        set while this waits, then or later while the batches are read.
        """
        with self._changed:
            while self._partial is None and not self._ended:
                self._wait(cancel)
            self._raise_if_abandoned()
            partial = self._partial
            ref = self._ref
        if partial is None:
            if ref is None:
                return None
            return read_schema(ref), iter_batches(ref)
        try:
            fd = os.open(partial, os.O_RDONLY)
        except FileNotFoundError:
            # the writer already renamed it into place: the artifact is whole
            with self._changed:
                while self._placed is None and not self._ended:
                    self._wait(cancel)
                self._raise_if_abandoned()
                whole = self._placed or (self._ref.path if self._ref else None)
            if whole is None:
                return None
            return read_schema(whole), iter_batches(whole)
        growing = _GrowingFile(self, fd, cancel)
        try:
            reader = ipc.open_stream(growing)
        except BaseException:
            growing.close()
            raise
        return reader.schema, _batches(reader, growing)

    def _wait(self, cancel: threading.Event) -> None:
        if cancel.is_set():
            raise ArtifactError(f"stopped while waiting for the output of '{self.task_id}'")
        self._changed.wait(_POLL_S)

    def _raise_if_abandoned(self) -> None:
        if self._abandoned:
            raise ArtifactError(
                f"the output of '{self.task_id}' was abandoned: its attempt did not succeed"
            )


def _batches(
    reader: ipc.RecordBatchStreamReader, growing: _GrowingFile
) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    finally:
        growing.close()


class _GrowingFile:
    """A read-only file object over the stream part of an IPC file still being written:
    ``read(n)`` blocks until ``n`` bytes are whole, or the writer closed the file."""

    def __init__(self, live: LiveOutput, fd: int, cancel: threading.Event) -> None:
        self._live = live
        self._fd = fd
        self._cancel = cancel
        self._position = _FILE_MAGIC_BYTES
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        live = self._live
        with live._changed:
            while True:
                live._raise_if_abandoned()
                available = live._written - self._position
                if live._complete or (size >= 0 and available >= size):
                    break
                live._wait(self._cancel)
        count = available if size < 0 else min(size, max(available, 0))
        data = os.pread(self._fd, count, self._position)
        self._position += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position - _FILE_MAGIC_BYTES

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)
