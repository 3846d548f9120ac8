"""Retention: delete ended runs older than an age, their rows and their files.

Which runs: those the store calls eligible (ended, not needing attention;
every run with ``force``) that ended before ``now - older_than``, except each
pipeline's ``keep_last`` most recent ended runs (see
:meth:`RunStore.retention_candidates`).

Order, files first, then rows: for each run, every :class:`RunFileDeleter`
deletes the run's files (the local run folder with its logs and artifacts;
remote logs once a deleter for them is added), then the run's rows go in one
transaction. The rows are the index of what to delete, so they go last: a
``kill -9`` in between leaves rows whose files are gone, and the run is still
old and eligible, so the next clean finds it again and finishes (deleting a
missing file is a no-op). Files are never left behind without rows that lead
to them, locally or in a bucket. Just before its files go, the run's
eligibility is read again, and the rows' transaction checks it once more, so a
run retried meanwhile keeps its rows.

A dry run measures the same runs with the same deleters and deletes nothing,
so its counts are what a clean then deletes (unless runs end or age meanwhile).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from batchpilot.errors import RemoteLogsError, RetentionError, RunNotFound
from batchpilot.settings import Settings
from batchpilot.states import RunStatus
from batchpilot.store import RunStore
from batchpilot.store.retention import RowCounts
from batchpilot.store.run_timings import RunTiming

if TYPE_CHECKING:  # pyarrow's S3 code loads only when logs are shipped
    from batchpilot.remote_logs import RemoteLogs


@dataclass(frozen=True)
class RetentionPolicy:
    """What a clean deletes: ended runs older than ``older_than``, but not each pipeline's
    ``keep_last`` most recent ended runs; with ``force`` also runs that are queued,
    running or need attention."""

    older_than: timedelta
    keep_last: int = 0
    force: bool = False

    def __post_init__(self) -> None:
        if self.older_than < timedelta(0):
            raise ValueError(f"older_than cannot be negative, got {self.older_than}")
        if self.keep_last < 0:
            raise ValueError(f"keep_last cannot be negative, got {self.keep_last}")


@dataclass(frozen=True)
class FileCounts:
    """How many files, and bytes, a deleter found (or deleted) for a run."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: FileCounts) -> FileCounts:
        return FileCounts(self.files + other.files, self.bytes + other.bytes)

    def to_dict(self) -> dict[str, int]:
        """``{"files": …, "bytes": …}``."""
        return {"files": self.files, "bytes": self.bytes}


class RunFileDeleter(Protocol):
    """Deletes the files one run left somewhere (a folder, a bucket).

    ``measure`` and ``delete`` see the same files, so a dry run's counts are a
    clean's. ``delete`` of files already gone is a no-op (a clean repeated after
    a crash). Raise :class:`RetentionError` for files that cannot be deleted.
    """

    #: the key its counts are reported under (``local``, ``remote``…)
    name: str

    def measure(self, run: RunTiming) -> FileCounts:
        """What :meth:`delete` would delete now."""
        ...

    def delete(self, run: RunTiming) -> FileCounts:
        """Delete the run's files; returns what was deleted."""
        ...


class LocalRunFolders:
    """A run's folder under the home (``runs/<run id>``): its attempt logs and artifacts."""

    name = "local"

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir

    def folder(self, run: RunTiming) -> Path | None:
        """The run's folder; None for an id that would leave ``runs_dir`` (never deleted)."""
        if not run.run_id or os.sep in run.run_id or run.run_id in (".", ".."):
            return None
        if os.altsep and os.altsep in run.run_id:
            return None
        return self.runs_dir / run.run_id

    def measure(self, run: RunTiming) -> FileCounts:
        """The files in the run's folder and their size."""
        folder = self.folder(run)
        if folder is None or not folder.is_dir():
            return FileCounts()
        total = FileCounts()
        for root, _dirs, files in os.walk(folder):
            for name in files:
                try:
                    size = os.lstat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue
                total = total + FileCounts(1, size)
        return total

    def delete(self, run: RunTiming) -> FileCounts:
        """Delete the run's folder. Raises :class:`RetentionError` naming it on failure."""
        found = self.measure(run)
        folder = self.folder(run)
        if folder is None or not folder.exists():
            return found
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise RetentionError(
                f"cannot delete the folder of run {run.run_id} ({folder}): {exc.strerror or exc}; "
                "its rows are kept, clean again once fixed",
                run_id=run.run_id,
            ) from exc
        return found


@dataclass
class CleanupReport:
    """What a clean deleted, or a dry run would delete."""

    dry_run: bool
    cutoff: datetime
    policy: RetentionPolicy
    #: the runs deleted (or to delete), oldest first
    runs: list[RunTiming] = field(default_factory=list)
    rows: RowCounts = field(default_factory=RowCounts)
    files: dict[str, FileCounts] = field(default_factory=dict)
    #: runs chosen but left alone: they were retried, flagged or deleted meanwhile
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The JSON form of ``batchpilot clean --output json``."""
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "older_than_s": self.policy.older_than.total_seconds(),
            "keep_last": self.policy.keep_last,
            "force": self.policy.force,
            "runs": len(self.runs),
            "run_ids": [r.run_id for r in self.runs],
            "rows": self.rows.to_dict(),
            "files": {name: counts.to_dict() for name, counts in self.files.items()},
            "skipped": self.skipped,
        }


def clean_runs(
    store: RunStore,
    policy: RetentionPolicy,
    *,
    deleters: Sequence[RunFileDeleter],
    now: datetime,
    dry_run: bool = False,
) -> CleanupReport:
    """Delete (or with ``dry_run`` only count) the runs ``policy`` chooses, files first
    then rows, one run at a time (see the module).

    Raises :class:`RetentionError` when a run's files cannot be deleted (runs
    before it are deleted; it and the runs after it are kept), and
    :class:`StoreError` when the store fails.
    """
    cutoff = now - policy.older_than
    report = CleanupReport(
        dry_run=dry_run,
        cutoff=cutoff,
        policy=policy,
        files={d.name: FileCounts() for d in deleters},
    )
    candidates = store.retention_candidates(
        ended_before=cutoff, keep_last=policy.keep_last, force=policy.force
    )
    for run in candidates:
        if dry_run:
            report.rows = report.rows + store.count_run_rows(run.run_id)
            for deleter in deleters:
                report.files[deleter.name] += deleter.measure(run)
            report.runs.append(run)
            continue
        if not _still_eligible(store, run.run_id, policy.force):
            report.skipped.append(run.run_id)
            continue
        deleted = {deleter.name: deleter.delete(run) for deleter in deleters}
        rows = store.delete_run_rows(run.run_id, force=policy.force)
        if rows is None:
            report.skipped.append(run.run_id)
            continue
        report.rows = report.rows + rows
        for name, counts in deleted.items():
            report.files[name] += counts
        report.runs.append(run)
    return report


def _still_eligible(store: RunStore, run_id: str, force: bool) -> bool:
    try:
        run = store.get_run(run_id)
    except RunNotFound:
        return False
    if run.run_id != run_id:  # get_run matched a prefix: the run itself is gone
        return False
    if force:
        return True
    return run.status in _ENDED and not run.needs_attention


_ENDED = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED})


class ShippedRunLogs:
    """The attempt logs a run shipped to S3-compatible storage (``BATCHPILOT_LOGS_URL``),
    so no orphan object stays in the bucket."""

    name = "remote"

    def __init__(self, logs: RemoteLogs) -> None:
        self.logs = logs

    def measure(self, run: RunTiming) -> FileCounts:
        """The run's log objects and their size."""
        try:
            files, size = self.logs.measure_run(pipeline=run.pipeline, run_id=run.run_id)
        except RemoteLogsError as exc:
            raise RetentionError(str(exc), run_id=run.run_id) from exc
        return FileCounts(files, size)

    def delete(self, run: RunTiming) -> FileCounts:
        """Delete the run's log objects. Raises :class:`RetentionError` on failure."""
        found = self.measure(run)
        try:
            self.logs.delete_run(pipeline=run.pipeline, run_id=run.run_id)
        except RemoteLogsError as exc:
            raise RetentionError(str(exc), run_id=run.run_id) from exc
        return found


def default_deleters(settings: Settings) -> list[RunFileDeleter]:
    """The deleters of a home: its local run folders, and the logs shipped to S3 when
    ``BATCHPILOT_LOGS_URL`` is set."""
    deleters: list[RunFileDeleter] = [LocalRunFolders(settings.runs_dir)]
    if settings.logs_url is not None:
        from batchpilot.remote_logs import remote_logs_for

        logs = remote_logs_for(
            settings.logs_url, settings.s3_endpoint, interval_s=settings.logs_ship_interval_s
        )
        deleters.append(ShippedRunLogs(logs))
    return deleters
