"""Where artifact files live: a local path, or an ``s3://bucket/key`` URL read and
written through pyarrow's S3 filesystem (Airflow workers on several machines).

The S3 filesystem is configured once per process at the edge (:func:`use_s3`,
from the AWS variables the edge read), so the functions that read a reference
need nothing but the reference.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from batchpilot.errors import ArtifactError
from batchpilot.s3 import S3Endpoint, s3_filesystem

if TYPE_CHECKING:
    import pyarrow.fs

S3_SCHEME = "s3://"

_filesystems: dict[S3Endpoint, pyarrow.fs.FileSystem] = {}
_active: pyarrow.fs.FileSystem | None = None
_lock = threading.Lock()


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is an ``s3://`` URL rather than a local path."""
    return isinstance(path, str) and path.startswith(S3_SCHEME)


def use_s3(endpoint: S3Endpoint) -> None:
    """Read and write ``s3://`` artifacts through ``endpoint`` from now on (this process)."""
    global _active
    with _lock:
        if endpoint not in _filesystems:
            _filesystems[endpoint] = s3_filesystem(endpoint)
        _active = _filesystems[endpoint]


def remote_file(url: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem and its path (``bucket/key``) of an ``s3://`` artifact URL.

    Raises :class:`ArtifactError` when no S3 endpoint was configured (:func:`use_s3`).
    """
    with _lock:
        filesystem = _active
    if filesystem is None:
        raise ArtifactError(
            f"artifact {url} is on S3 but this process has no S3 settings; "
            "the edge that runs the step must call batchpilot.artifacts.storage.use_s3"
        )
    return filesystem, url.removeprefix(S3_SCHEME)
