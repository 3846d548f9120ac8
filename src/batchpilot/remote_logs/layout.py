"""Where an attempt's log lives in the bucket.

One folder per attempt log, one object per shipment::

    <prefix>/<pipeline>/<run_id>/<task_id>/<log name>/<first byte, 16 digits>.log
    e.g. logs/daily_etl/20240301T020000-ab12/load/load.attempt-2/0000000000004096.log

``<log name>`` is the local log file's name without ``.log``
(``load.attempt-2``, ``load.compensation-1``, ``load.on_failure.2-1``), so
every attempt, compensation and callback of a run has its own folder. An
object holds the log's bytes from its offset on; the objects in offset order
are the log. A process that ships the same file again (a resumed attempt)
starts at offset 0: later objects overlap earlier ones with the same bytes,
and a reader skips what it already has.
"""

from __future__ import annotations

from pathlib import PurePath

from batchpilot.s3.location import S3Url

OFFSET_DIGITS = 16
CHUNK_SUFFIX = ".log"


def attempt_log_folder(url: S3Url, pipeline: str, run_id: str, task_id: str, log_path: str) -> str:
    """The folder (``bucket/prefix/…``) of the attempt whose local log is ``log_path``."""
    name = PurePath(log_path).name
    name = name.removesuffix(".log")
    return url.key(pipeline, run_id, task_id, name)


def chunk_path(folder: str, start: int) -> str:
    """The object holding the log's bytes from ``start`` on."""
    return f"{folder}/{start:0{OFFSET_DIGITS}d}{CHUNK_SUFFIX}"


def chunk_start(path: str) -> int | None:
    """The first byte offset a chunk's path names; None for any other object."""
    name = path.rsplit("/", 1)[-1]
    digits = name.removesuffix(CHUNK_SUFFIX)
    if name == digits or len(digits) != OFFSET_DIGITS or not digits.isdigit():
        return None
    return int(digits)
