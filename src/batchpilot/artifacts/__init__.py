"""Datasets passed between steps: Arrow IPC files, by reference.

A step's output is written batch by batch to a temporary file and renamed
into place only when complete, so a crash never leaves a half-written
artifact that a resumed run would take for a finished one. Readers either
memory-map the whole table (cheap hand-off to DuckDB or polars) or stream it
batch by batch (bounded memory for loads).

The root may also be an ``s3://bucket/prefix`` URL (Airflow workers on several
machines share it): files are then written and read through pyarrow's S3
filesystem (see :mod:`batchpilot.artifacts.storage`), a partial file is
moved into place only when complete, and references are ``s3://`` URLs.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.ipc as ipc

from batchpilot.artifacts.storage import is_remote, remote_file
from batchpilot.errors import ArtifactError

if TYPE_CHECKING:
    from batchpilot.artifacts.live import LiveOutput

ARTIFACT_SUFFIX = ".arrow"
_T = TypeVar("_T")


@dataclass(frozen=True)
class ArtifactRef:
    """Where a dataset lives and how many rows it holds."""

    path: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-able form, as stored in the state database."""
        return {"path": self.path, "rows": self.rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactRef:
        """Rebuild a reference from :meth:`to_json`'s output."""
        return cls(path=str(data["path"]), rows=int(data["rows"]))


class ArtifactStore:
    """The folder (or ``s3://`` URL) that holds one run's artifacts."""

    def __init__(self, root: str | Path) -> None:
        #: the ``s3://`` URL the datasets go to; None for a local folder
        self.url = str(root).rstrip("/") if is_remote(root) else None
        #: the local folder: the datasets' own, or beside an ``s3://`` root a scratch
        #: folder for what a run keeps on the machine (an Airflow worker's actions)
        self.root = Path(root) if self.url is None else _scratch_folder(self.url)

    def path_for(self, task_id: str, name: str = "output") -> Path:
        """Return the file path of a task's named output (in the local folder)."""
        suffix = "" if name == "output" else f".{name}"
        return self.root / f"{task_id}{suffix}{ARTIFACT_SUFFIX}"

    def location_for(self, task_id: str, name: str = "output") -> str:
        """Where a task's named output is written: a local path or an ``s3://`` URL."""
        if self.url is None:
            return str(self.path_for(task_id, name))
        return f"{self.url}/{self.path_for(task_id, name).name}"

    def write_table(self, task_id: str, table: pa.Table, name: str = "output") -> ArtifactRef:
        """Write a whole table as a task's output and return its reference."""
        return self.write_batches(task_id, table.schema, table.to_batches(), name=name)

    def write_batches(
        self,
        task_id: str,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        name: str = "output",
        *,
        live: LiveOutput | None = None,
    ) -> ArtifactRef:
        """Stream record batches into a task's output, atomically, and return its reference.

        With ``live`` (an output consumers follow while it is written), each batch
        is announced to them as soon as it is complete (local folders only).
        """
        if self.url is not None:
            return _write_remote(self.location_for(task_id, name), schema, batches)
        target = self.path_for(task_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + f".{os.getpid()}.partial")
        rows = 0
        try:
            with pa.OSFile(str(partial), "wb") as sink:
                if live is not None and not live.begin(partial):
                    live = None
                with ipc.new_file(sink, schema) as writer:
                    for batch in batches:
                        if batch.num_rows:
                            writer.write_batch(batch)
                            rows += batch.num_rows
                            if live is not None:
                                live.wrote(sink.tell())
                if live is not None:
                    live.wrote(sink.tell(), complete=True)
            os.replace(partial, target)
            if live is not None:
                live.placed(target)
        except BaseException:
            if live is not None:
                live.abandon()
            partial.unlink(missing_ok=True)
            raise
        return ArtifactRef(path=str(target), rows=rows)


def _scratch_folder(url: str) -> Path:
    return Path(tempfile.gettempdir()) / "batchpilot-s3" / re.sub(r"[^A-Za-z0-9_.\-]", "_", url)


def _write_remote(url: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> ArtifactRef:
    """Write to ``<url>.<pid>.partial``, then move it to ``url`` once complete."""
    filesystem, target = remote_file(url)
    partial = f"{target}.{os.getpid()}.partial"
    rows = 0
    try:
        with filesystem.open_output_stream(partial) as sink, ipc.new_file(sink, schema) as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        filesystem.move(partial, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # never written, or the storage is down
            filesystem.delete_file(partial)
        if isinstance(exc, OSError):
            raise ArtifactError(f"cannot write artifact {url}: {exc}") from exc
        raise
    return ArtifactRef(path=url, rows=rows)


def _open_remote(path: str) -> pa.NativeFile:
    filesystem, key = remote_file(path)
    try:
        return filesystem.open_input_file(key)
    except FileNotFoundError:
        raise ArtifactError(
            f"artifact {path} is missing: was it deleted from the bucket? "
            "Run the upstream task again to produce it"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc


def read_table(ref: ArtifactRef | str | Path) -> pa.Table:
    """Memory-map an artifact as one table (no copy of the data is made; an ``s3://``
    artifact is downloaded)."""
    if is_remote(remote := _ref_path(ref)):
        with _open_remote(remote) as source:
            return _reading(remote, lambda: ipc.open_file(source).read_all())
    path = _path(ref)
    try:
        source = pa.memory_map(path, "r")
        return ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc


def read_schema(ref: ArtifactRef | str | Path) -> pa.Schema:
    """Return an artifact's schema without reading its rows."""
    if is_remote(remote := _ref_path(ref)):
        with _open_remote(remote) as source:
            return _reading(remote, lambda: ipc.open_file(source).schema)
    path = _path(ref)
    try:
        with pa.OSFile(path, "rb") as source:
            return ipc.open_file(source).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc


def iter_batches(ref: ArtifactRef | str | Path) -> Iterator[pa.RecordBatch]:
    """Yield an artifact's record batches one at a time, reading each from disk.

    Unlike :func:`read_table`, pages are not kept mapped, so memory stays
    bounded by one batch whatever the file's size (an ``s3://`` artifact is read
    by ranges).
    """
    path = _ref_path(ref)
    try:
        source = _open_remote(path) if is_remote(path) else pa.OSFile(_path(ref), "rb")
        reader = ipc.open_file(source)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc
    with source:
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _reading(path: str, read: Callable[[], _T]) -> _T:
    try:
        return read()
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc}") from exc


def _ref_path(ref: ArtifactRef | str | Path) -> str:
    return ref.path if isinstance(ref, ArtifactRef) else str(ref)


def _path(ref: ArtifactRef | str | Path) -> str:
    path = _ref_path(ref)
    if not os.path.exists(path):
        raise ArtifactError(
            f"artifact {path} is missing: was the run folder deleted? "
            "'batchpilot retry' the upstream task to produce it again"
        )
    return path
