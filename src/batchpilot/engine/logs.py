"""Reading the logs of a run's task attempts, the same shape wherever the run executed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchpilot.remote_logs import RemoteLogs
from batchpilot.store import RunRecord, RunStore


@dataclass(frozen=True)
class AttemptLog:
    """One attempt's log: its text from ``offset`` on, and where the next read starts.

    ``next_offset`` is the size of the log read so far (bytes for a local
    file, characters for a remote log), so a follower asks again from there.
    """

    task_id: str
    attempt: int
    state: str
    error: str | None
    log_path: str | None
    text: str
    offset: int = 0
    next_offset: int = 0

    @property
    def key(self) -> str:
        """What a follower keeps this log's next offset under (see :data:`Offsets`)."""
        return offset_key(self.log_path, self.task_id, self.attempt)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``batchpilot logs --output json`` prints, one per attempt."""
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "state": self.state,
            "error": self.error,
            "log_path": self.log_path,
            "log": self.text,
        }


def read_log_file(path: str | None, offset: int = 0) -> tuple[str, int]:
    """The text of a log file from byte ``offset`` on, and the offset after it.

    A file that cannot be read (an attempt that has not written yet, a deleted
    run folder) reads as empty text. Undecodable bytes are replaced, never raised.
    """
    if not path:
        return "", offset
    try:
        with Path(path).open("rb") as file:
            file.seek(offset)
            data = file.read()
    except OSError:  # not written yet, or the run folder was removed or is unreadable
        return "", offset
    return decode_log(data), offset + len(data)


def decode_log(data: bytes) -> str:
    """Log bytes as text: undecodable bytes replaced, newlines as ``Path.read_text``
    reads them (as ``logs`` always printed them)."""
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


#: where each attempt's next read starts, by :func:`offset_key`
Offsets = Mapping[str, int]


def offset_key(log_path: str | None, task_id: str, attempt: int) -> str:
    """An attempt's key in :data:`Offsets`: its ``log_path`` (unique in a run, unlike the
    attempt number a compensation shares with its task's attempts), else, for a log kept
    in the store (only a task's own attempts have one), the task and attempt."""
    return log_path or f"{task_id}:{attempt}"


def read_local_logs(
    store: RunStore,
    run: RunRecord,
    *,
    task: str | None = None,
    attempt: int | None = None,
    offset: int = 0,
    offsets: Offsets | None = None,
    remote: RemoteLogs | None = None,
) -> list[AttemptLog]:
    """Each recorded attempt's log of a run that executed on this machine (filtered by
    ``task`` and ``attempt``), in the store's order, from ``offsets`` (else ``offset``) on.

    An attempt that ran on the engine's thread has its log in its record
    (``log_text``). Another's local file is read while it exists; once it is gone
    (the run folder was removed, or the run was driven on another machine) its
    chunks shipped to ``remote`` are, from the same byte offset. Raises
    :class:`RemoteLogsError` when the storage cannot be read.
    """
    logs = []
    for record in store.get_attempts(run.run_id, task):
        if attempt is not None and record.attempt != attempt:
            continue
        key = offset_key(record.log_path, record.task_id, record.attempt)
        start = (offsets or {}).get(key, offset)
        if record.log_text is not None:
            data = record.log_text.encode("utf-8")[start:]
            text, next_offset = decode_log(data), start + len(data)
        elif remote is not None and record.log_path and not Path(record.log_path).exists():
            data, next_offset = remote.read(
                pipeline=run.pipeline,
                run_id=run.run_id,
                task_id=record.task_id,
                log_path=record.log_path,
                offset=start,
            )
            text = decode_log(data)
        else:
            text, next_offset = read_log_file(record.log_path, start)
        logs.append(
            AttemptLog(
                task_id=record.task_id,
                attempt=record.attempt,
                state=record.state.value,
                error=record.error,
                log_path=record.log_path,
                text=text,
                offset=start,
                next_offset=next_offset,
            )
        )
    return logs
