"""The pipelines ``serve`` schedules: the files under a folder, re-read when they change.

:meth:`PipelineCatalog.refresh` compares each file's (mtime, size) with what it
read last, and reads again only what was added or changed; a removed file
leaves the catalog. A file that becomes invalid keeps its last valid version in
the catalog (still scheduled) and records its error; a file never valid is
listed with its error only. Two files defining one pipeline name: the first (in
path order) wins, the second is listed with an error naming the first.

The catalog can be saved to a snapshot file and seeded from it, so a restarted
``serve`` (and ``batchpilot pipelines list``) still knows the last valid
version of a file that broke while serve was running.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchpilot.discovery import discover_pipeline_files, looks_like_pipeline
from batchpilot.engine import check_queued_run
from batchpilot.errors import SpecError, SpecErrors
from batchpilot.pipeline import load_pipeline
from batchpilot.settings import Settings
from batchpilot.spec.loader import build_pipeline
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.serialize import spec_to_document
from batchpilot.spec.triggers import trigger_graph_errors

#: Seconds between two looks at the folder (files changed are noticed within this).
CATALOG_POLL_S = 2.0


class PipelineNotFound(SpecError):
    """No pipeline of that name is defined under the pipelines folder."""

    def __init__(self, name: str, folder: Path, known: list[str]) -> None:
        self.name = name
        names = ", ".join(known) or "none"
        super().__init__(f"no pipeline named '{name}' under {folder} (pipelines: {names})")


@dataclass(frozen=True)
class CatalogEntry:
    """One pipeline file: its last valid version (``spec``) and its current ``error``."""

    path: Path
    spec: PipelineSpec | None = None
    error: str | None = None
    signature: tuple[int, int] | None = None
    loaded_at: datetime | None = None

    @property
    def name(self) -> str:
        """The pipeline's name (the file's stem while it was never valid)."""
        return self.spec.name if self.spec is not None else self.path.stem


@dataclass(frozen=True)
class CatalogChanges:
    """What one :meth:`PipelineCatalog.refresh` noticed, as file paths."""

    added: tuple[Path, ...] = ()
    changed: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def load_checked(path: Path, settings: Settings) -> PipelineSpec:
    """Load a pipeline file; a scheduled or triggered one is also checked as its runs will
    be (steps, configs, connections, default params). Raises :class:`SpecError`."""
    spec = load_pipeline(path)
    if spec.schedule is not None or spec.triggers:
        check_queued_run(spec, settings=settings, ds="2000-01-01")
    return spec


class PipelineCatalog:
    """The pipeline files under ``folder``, each with its last valid version."""

    def __init__(
        self,
        folder: Path,
        *,
        settings: Settings,
        load: Callable[[Path, Settings], PipelineSpec] = load_checked,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.folder = folder
        self.settings = settings
        self._load = load
        self._now = now
        self._entries: dict[Path, CatalogEntry] = {}
        #: errors that need every pipeline (an ``after`` on an unknown one, a cycle), by file
        self._graph_errors: dict[Path, str] = {}
        #: whether each YAML/JSON file holds a pipeline, by the file's signature: a refresh
        #: (every 2 s) parses only the files that changed
        self._holds_pipeline: dict[Path, tuple[tuple[int, int] | None, bool]] = {}

    # -- reading ------------------------------------------------------------------------

    def refresh(self) -> CatalogChanges:
        """Read the files added or changed since the last refresh, forget removed ones.

        Never raises for a broken file (it records the error). Raises
        :class:`SpecError` when the folder itself does not exist.
        """
        if not self.folder.is_dir():
            raise SpecError(f"the pipelines folder {self.folder} does not exist", path=self.folder)
        known = self._holds_pipeline
        self._holds_pipeline = {}

        def holds_pipeline(path: Path) -> bool:
            signature = _signature(path)
            seen = known.get(path)
            answer = seen[1] if seen is not None and seen[0] == signature else None
            if answer is None:
                answer = looks_like_pipeline(path)
            self._holds_pipeline[path] = (signature, answer)
            return answer

        found = {
            p.resolve(): p
            for p in discover_pipeline_files([self.folder], is_pipeline=holds_pipeline)
        }
        removed = tuple(p for p in self._entries if p not in found)
        for path in removed:
            del self._entries[path]
        added: list[Path] = []
        changed: list[Path] = []
        for path in sorted(found):
            signature = _signature(path)
            known = self._entries.get(path)
            if known is not None and known.signature == signature:
                continue
            (changed if known is not None else added).append(path)
            self._entries[path] = self._read(path, signature, known)
        self._mark_duplicates()
        self._graph_errors = _trigger_errors(self._entries)
        return CatalogChanges(tuple(added), tuple(changed), removed)

    def _read(
        self, path: Path, signature: tuple[int, int] | None, known: CatalogEntry | None
    ) -> CatalogEntry:
        try:
            spec = self._load(path, self.settings)
        except SpecError as exc:
            problems = exc.errors if isinstance(exc, SpecErrors) else [exc]
            error = "; ".join(str(e) for e in problems)
            last = known or CatalogEntry(path)
            return replace(last, error=error, signature=signature)
        return CatalogEntry(path, spec, None, signature, self._now())

    def _mark_duplicates(self) -> None:
        owner: dict[str, Path] = {}
        for path in sorted(self._entries):
            entry = self._entries[path]
            if entry.spec is None:
                continue
            first = owner.setdefault(entry.name, path)
            if first != path:
                message = f"pipeline name '{entry.name}' is already defined in {first}"
                self._entries[path] = CatalogEntry(path, None, message, entry.signature)

    # -- answers ------------------------------------------------------------------------

    def entries(self) -> list[CatalogEntry]:
        """Every pipeline file, by path."""
        return [
            _with_error(self._entries[p], self._graph_errors.get(p)) for p in sorted(self._entries)
        ]

    def specs(self) -> list[PipelineSpec]:
        """The last valid version of every pipeline, by path."""
        return [e.spec for e in self.entries() if e.spec is not None]

    def scheduled(self) -> list[PipelineSpec]:
        """The pipelines with a schedule (their last valid version)."""
        return [s for s in self.specs() if s.schedule is not None]

    def triggered(self) -> list[PipelineSpec]:
        """The pipelines with triggers whose ``after`` triggers name known pipelines and
        form no cycle (their last valid version)."""
        return [
            e.spec
            for e in self.entries()
            if e.spec is not None and e.spec.triggers and e.path not in self._graph_errors
        ]

    def entry(self, name: str) -> CatalogEntry:
        """The file defining pipeline ``name``; raises :class:`PipelineNotFound`."""
        for entry in self.entries():
            if entry.spec is not None and entry.name == name:
                return entry
        for entry in self.entries():
            if entry.name == name and entry.error:
                raise SpecError(f"pipeline '{name}' is invalid: {entry.error}", path=entry.path)
        raise PipelineNotFound(name, self.folder, sorted({e.name for e in self.entries()}))

    def get(self, name: str) -> PipelineSpec:
        """The last valid version of pipeline ``name``; raises :class:`PipelineNotFound`."""
        spec = self.entry(name).spec
        assert spec is not None
        return spec

    # -- snapshot -----------------------------------------------------------------------

    def save_snapshot(self, target: Path) -> None:
        """Write the catalog (each file's last valid version and error) to ``target``,
        atomically (a reader never sees half a file)."""
        document = {"folder": str(self.folder.resolve()), "entries": []}
        for entry in self.entries():
            document["entries"].append(  # type: ignore[attr-defined]
                {
                    "path": str(entry.path),
                    "document": spec_to_document(entry.spec) if entry.spec else None,
                    "error": entry.error,
                    "loaded_at": entry.loaded_at.isoformat() if entry.loaded_at else None,
                }
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(document, indent=1, default=str))
        os.replace(partial, target)

    def seed_from_snapshot(self, source: Path) -> None:
        """Take the last valid versions a snapshot of the same folder recorded, for files
        that are invalid now (call before :meth:`refresh`). A missing or unreadable
        snapshot is ignored: the files alone are the truth then."""
        document = _read_json(source)
        if not document or document.get("folder") != str(self.folder.resolve()):
            return
        for item in document.get("entries", []):
            if not item.get("document"):
                continue
            path = Path(item["path"])
            try:
                spec = build_pipeline(item["document"], source_path=str(path))
            except SpecError:
                continue
            loaded = item.get("loaded_at")
            self._entries[path] = CatalogEntry(
                path, spec, None, None, datetime.fromisoformat(loaded) if loaded else None
            )


def snapshot_path(settings: Settings) -> Path:
    """Where ``serve`` keeps its catalog snapshot, under the batchpilot home."""
    return settings.home / "serve" / "catalog.json"


def _trigger_errors(entries: dict[Path, CatalogEntry]) -> dict[Path, str]:
    """Each file whose ``after`` triggers name an unknown pipeline or close a cycle."""
    specs = {e.spec.name: (path, e.spec) for path, e in entries.items() if e.spec is not None}
    errors = trigger_graph_errors(
        {name: spec.triggers for name, (_, spec) in specs.items()},
        {name: str(path) for name, (path, _) in specs.items()},
    )
    return {specs[name][0]: message for name, message in errors.items()}


def _with_error(entry: CatalogEntry, error: str | None) -> CatalogEntry:
    if error is None:
        return entry
    return replace(entry, error=f"{entry.error}; {error}" if entry.error else error)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _read_json(source: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(source.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


__all__ = [
    "CATALOG_POLL_S",
    "CatalogChanges",
    "CatalogEntry",
    "PipelineCatalog",
    "PipelineNotFound",
    "load_checked",
    "snapshot_path",
]
