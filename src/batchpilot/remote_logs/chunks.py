"""An attempt log as chunk objects on a pyarrow filesystem: write one, read from an offset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchpilot.remote_logs.layout import chunk_path, chunk_start

if TYPE_CHECKING:
    import pyarrow.fs


@dataclass(frozen=True)
class Chunk:
    """One shipped piece of a log: bytes ``start`` to ``start + size``."""

    start: int
    size: int
    path: str

    @property
    def end(self) -> int:
        """The offset just after its last byte."""
        return self.start + self.size


class LogChunks:
    """Attempt logs stored as chunk objects (see :mod:`batchpilot.remote_logs.layout`).

    Every method raises :class:`OSError` when the storage cannot be reached.
    """

    def __init__(self, filesystem: pyarrow.fs.FileSystem) -> None:
        self.filesystem = filesystem

    def put(self, folder: str, start: int, data: bytes) -> None:
        """Store ``data`` as the log's bytes from ``start`` on (one object, replaced
        whole if it exists: shipping the same bytes again is harmless)."""
        with self.filesystem.open_output_stream(chunk_path(folder, start)) as stream:
            stream.write(data)

    def list(self, folder: str) -> list[Chunk]:
        """The chunks of a log in offset order (none when nothing was shipped)."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(folder, allow_not_found=True)
        chunks = []
        for info in self.filesystem.get_file_info(selector):
            start = chunk_start(info.path)
            if start is not None and info.type is pyarrow.fs.FileType.File:
                chunks.append(Chunk(start, info.size or 0, info.path))
        return sorted(chunks, key=lambda c: (c.start, -c.size))

    def measure_folder(self, folder: str) -> tuple[int, int]:
        """How many objects, and bytes, lie under ``folder`` (0, 0 when none)."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(folder, recursive=True, allow_not_found=True)
        files = [
            info
            for info in self.filesystem.get_file_info(selector)
            if info.type is pyarrow.fs.FileType.File
        ]
        return len(files), sum(info.size or 0 for info in files)

    def delete_folder(self, folder: str) -> None:
        """Delete every object under ``folder`` (none there is no error)."""
        import pyarrow.fs

        if self.filesystem.get_file_info(folder).type is not pyarrow.fs.FileType.NotFound:
            self.filesystem.delete_dir(folder)

    def read(self, folder: str, offset: int = 0) -> tuple[bytes, int] | None:
        """The log's bytes from ``offset`` on and the offset after them; None when no
        chunk of it exists. Stops at a gap (a chunk not shipped yet)."""
        chunks = self.list(folder)
        if not chunks:
            return None
        pieces, position = [], offset
        for chunk in chunks:
            if chunk.end <= position:
                continue  # already read, or an earlier shipment of the same bytes
            if chunk.start > position:
                break
            with self.filesystem.open_input_file(chunk.path) as file:
                pieces.append(file.read_at(chunk.end - position, position - chunk.start))
            position = chunk.end
        return b"".join(pieces), position
