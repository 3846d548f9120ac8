"""Finding the pipeline files under folders: one rule for ``validate``, ``export`` and ``serve``.

A file named explicitly is always a candidate (so a wrong path is reported,
not skipped). Under a folder, a YAML or JSON file counts when it holds a
mapping with ``nodes``, or when it cannot be parsed at all (a broken file that
may be a pipeline is reported rather than silently ignored). Files come back
in a stable order: as named, and sorted within each folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from batchpilot.errors import SpecError
from batchpilot.spec.loader import PIPELINE_SUFFIXES, parse_document


def discover_pipeline_files(
    paths: Iterable[Path],
    *,
    suffixes: Iterable[str] = PIPELINE_SUFFIXES,
    is_pipeline: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """The pipeline files named by ``paths``: files as given, and the pipelines under folders.

    ``suffixes`` (lower case, with the dot) chooses which files under a folder
    are looked at; a ``.py`` file among them counts without being imported.
    ``is_pipeline`` (default :func:`looks_like_pipeline`) tells a YAML/JSON file under
    a folder that holds a pipeline (``serve`` remembers its answers per file version).
    Never raises: an unreadable file is returned so that loading it reports why.
    """
    looks = is_pipeline or looks_like_pipeline
    wanted = tuple(s.lower() for s in suffixes)
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        for candidate in sorted(path.rglob("*")):
            suffix = candidate.suffix.lower()
            if suffix not in wanted or not candidate.is_file():
                continue
            if suffix == ".py" or looks(candidate):
                found.append(candidate)
    return found


def looks_like_pipeline(path: Path) -> bool:
    """True for a YAML/JSON file holding a mapping with ``nodes``, or one that cannot be parsed."""
    try:
        document = parse_document(path)
    except SpecError:
        return True  # a broken file that may be a pipeline: report it
    return isinstance(document, dict) and "nodes" in document
