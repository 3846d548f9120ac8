"""Reading the logs of a run's task attempts, the same shape wherever the run executed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    A missing file (an attempt that has not written yet, or a deleted run
    folder) reads as empty text. Undecodable bytes are replaced, never raised.
    """
    if not path:
        return "", offset
    try:
        with Path(path).open("rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return "", offset
    text = data.decode("utf-8", errors="replace")
    # Newlines read as by Path.read_text, as ``logs`` always printed them.
    return text.replace("\r\n", "\n").replace("\r", "\n"), offset + len(data)


def read_local_logs(
    store: RunStore,
    run: RunRecord,
    *,
    task: str | None = None,
    attempt: int | None = None,
    offset: int = 0,
) -> list[AttemptLog]:
    """Each recorded attempt's log of a run that executed on this machine (filtered by
    ``task`` and ``attempt``), in the store's order."""
    logs = []
    for record in store.get_attempts(run.run_id, task):
        if attempt is not None and record.attempt != attempt:
            continue
        text, next_offset = read_log_file(record.log_path, offset)
        logs.append(
            AttemptLog(
                task_id=record.task_id,
                attempt=record.attempt,
                state=record.state.value,
                error=record.error,
                log_path=record.log_path,
                text=text,
                offset=offset,
                next_offset=next_offset,
            )
        )
    return logs
