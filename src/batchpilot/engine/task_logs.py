"""One log per task attempt, capturing the step's logger and its prints: a file, or for
an attempt that returns at once, text kept for the attempt's record in the store."""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

_current_stream: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(
    "batchpilot_task_stream", default=None
)
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s")


class AttemptLog:
    """The log of one attempt; ``logger`` writes to it and so do ``print`` calls.

    ``path`` None: an attempt that returns at once (a step that never blocks, run on
    the engine's thread). Its lines are kept in memory, and :attr:`text` holds them
    once the log is closed, for the attempt's record in the store: no file is created
    for a log no one can follow while it is written.
    """

    def __init__(self, path: Path | None, *, name: str) -> None:
        self.path = path
        #: an in-memory log's lines, once it is closed
        self.text: str | None = None
        self._file: TextIO = (
            io.StringIO() if path is None else open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        )
        self.logger = logging.Logger(name, level=logging.DEBUG)  # not registered globally
        handler = logging.StreamHandler(self._file)
        handler.setFormatter(_FORMAT)
        self.logger.addHandler(handler)
        self._token: contextvars.Token[TextIO | None] | None = None

    def write(self, level: int, message: str) -> None:
        """Write one line as :attr:`logger` would, without building a log record (the
        engine's own lines: one attempt's header and ending)."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        millis = int((now - int(now)) * 1000)
        self._file.write(f"{stamp},{millis:03d} {logging.getLevelName(level)} {message}\n")

    def __enter__(self) -> AttemptLog:
        _install_stdio_router()
        self._token = _current_stream.set(self._file)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            _current_stream.reset(self._token)
        self.close()

    def close(self) -> None:
        """Flush and close the file (an in-memory log: keep its text in :attr:`text`)."""
        for handler in self.logger.handlers:
            handler.flush()
        if isinstance(self._file, io.StringIO):
            self.text = self._file.getvalue()
        self._file.close()


class ExternalLog:
    """An attempt that logs to a logger someone else set up (an Airflow task's log)."""

    #: the log is the other's to keep
    text: str | None = None

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write(self, level: int, message: str) -> None:
        """Log one line of the engine's own."""
        self.logger.log(level, "%s", message)

    def __enter__(self) -> ExternalLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class _StdioRouter(io.TextIOBase):
    """Sends writes to the current attempt's log when one is active in this context."""

    def __init__(self, fallback: TextIO) -> None:
        self._fallback = fallback

    def write(self, text: str) -> int:
        stream = _current_stream.get()
        target = stream if stream is not None and not stream.closed else self._fallback
        return target.write(text)

    def flush(self) -> None:
        stream = _current_stream.get()
        if stream is not None and not stream.closed:
            stream.flush()
        self._fallback.flush()

    def isatty(self) -> bool:
        return self._fallback.isatty()

    def fileno(self) -> int:
        return self._fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._fallback, "encoding", "utf-8")


_install_lock = threading.Lock()


def _install_stdio_router() -> None:
    if isinstance(sys.stdout, _StdioRouter) and isinstance(sys.stderr, _StdioRouter):
        return  # installed by an earlier attempt (the usual case: no lock to take)
    with _install_lock:
        if not isinstance(sys.stdout, _StdioRouter):
            sys.stdout = _StdioRouter(sys.stdout)  # type: ignore[assignment]
        if not isinstance(sys.stderr, _StdioRouter):
            sys.stderr = _StdioRouter(sys.stderr)  # type: ignore[assignment]
