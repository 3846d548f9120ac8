"""One pass over the pipelines' triggers: a run per new stable file, a run per qualifying
upstream run, each created with its fire record in one store transaction.

The decisions are pure functions of what was observed and the clock:
:func:`observe_files` / :func:`stable_files` (a file is stable once its (size, mtime)
has not changed for ``stable_for``), :func:`unfired` (not fired before) and
:func:`qualifying_runs` (ended with the wanted status, after the trigger was armed).
:func:`run_trigger_tick` reads the folder and the store, decides, and writes through
:class:`~batchpilot.store.triggers.TriggerStore`. Killed anywhere, a file has its run
with its fire record or neither; a file that lands while a run is going waits for the
next pass, not for the run.
"""

from __future__ import annotations

import glob as globbing
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from batchpilot.clock import Clock
from batchpilot.engine import new_run_id, queued_run
from batchpilot.errors import SpecError
from batchpilot.spec.model import PipelineSpec
from batchpilot.spec.triggers import TRIGGER_PARAM, AfterTrigger, FileTrigger, UpstreamStatus
from batchpilot.states import RunStatus, RunTrigger
from batchpilot.store import RunStore, RunSummaryRecord
from batchpilot.store.run_rows import NewRun
from batchpilot.store.triggers import FireIdentity, file_identity, upstream_identity

#: How far back a pass looks for upstream runs that ended (besides "since the trigger was
#: armed"): an upstream run that ended while ``serve`` was down longer than this never fires.
AFTER_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class SeenFile:
    """A file as listed: its absolute path, size and mtime (ns)."""

    path: str
    size: int
    mtime_ns: int

    @property
    def identity(self) -> FireIdentity:
        """What the store keys this file's fire by."""
        return file_identity(self.path, self.size, self.mtime_ns)


@dataclass(frozen=True)
class WatchedFile:
    """A file and since when it has looked the same (size and mtime unchanged)."""

    file: SeenFile
    unchanged_since: datetime


def observe_files(
    previous: Mapping[str, WatchedFile], listing: Iterable[SeenFile], now: datetime
) -> dict[str, WatchedFile]:
    """The files now listed, each with since when it is unchanged (``now`` when it is new or
    its size or mtime changed). A file gone from the listing is forgotten."""
    watched: dict[str, WatchedFile] = {}
    for seen in listing:
        before = previous.get(seen.path)
        same = before is not None and before.file == seen
        watched[seen.path] = before if same else WatchedFile(seen, now)  # type: ignore[assignment]
    return watched


def stable_files(
    watched: Mapping[str, WatchedFile], now: datetime, stable_for_s: float
) -> list[SeenFile]:
    """The files unchanged for at least ``stable_for_s``, by path."""
    limit = timedelta(seconds=stable_for_s)
    return sorted(
        (w.file for w in watched.values() if now - w.unchanged_since >= limit),
        key=lambda f: f.path,
    )


def unfired(files: Sequence[SeenFile], fired_keys: set[str]) -> list[SeenFile]:
    """The files whose (path, size, mtime) the trigger never fired for."""
    return [f for f in files if f.identity.key not in fired_keys]


def qualifying_runs(
    runs: Iterable[RunSummaryRecord], status: UpstreamStatus, armed_at: datetime
) -> list[RunSummaryRecord]:
    """The upstream runs that ended with ``status`` (``any``: success or failed) at or after
    ``armed_at``, in the order they ended (a cancelled run never qualifies)."""
    wanted = {
        UpstreamStatus.SUCCESS: {RunStatus.SUCCESS},
        UpstreamStatus.FAILED: {RunStatus.FAILED},
        UpstreamStatus.ANY: {RunStatus.SUCCESS, RunStatus.FAILED},
    }[status]
    chosen = [
        r for r in runs if r.status in wanted and r.ended_at is not None and r.ended_at >= armed_at
    ]
    return sorted(chosen, key=lambda r: (r.ended_at, r.run_id))


def list_files(pattern: str) -> list[SeenFile]:
    """The regular files matching the absolute glob ``pattern`` now (hidden ones too)."""
    found = []
    for path in globbing.glob(pattern, include_hidden=True):
        try:
            stat = os.stat(path)
        except OSError:  # removed between the listing and the stat
            continue
        if os.path.isfile(path):
            found.append(SeenFile(os.path.abspath(path), stat.st_size, stat.st_mtime_ns))
    return found


@dataclass
class TriggerWatches:
    """What ``serve`` remembers between passes: each file trigger's watched files."""

    files: dict[tuple[str, str], dict[str, WatchedFile]] = field(default_factory=dict)


@dataclass
class TriggerReport:
    """What one pass did: runs created, and pipelines whose trigger could not fire."""

    created: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def run_trigger_tick(
    pipelines: Iterable[PipelineSpec], store: RunStore, clock: Clock, watches: TriggerWatches
) -> TriggerReport:
    """Fire every trigger of every pipeline once over (see the module)."""
    report = TriggerReport()
    now = clock.now()
    for spec in pipelines:
        for trigger in spec.triggers:
            try:
                if isinstance(trigger, FileTrigger):
                    created = _fire_files(spec, trigger, store, now, watches)
                else:
                    created = _fire_after(spec, trigger, store, now)
            except SpecError as exc:  # e.g. a required parameter a trigger cannot give
                report.errors[spec.name] = str(exc)
                continue
            report.created.extend(created)
    return report


def _fire_files(
    spec: PipelineSpec,
    trigger: FileTrigger,
    store: RunStore,
    now: datetime,
    watches: TriggerWatches,
) -> list[str]:
    slot = (spec.name, trigger.key)
    watched = observe_files(watches.files.get(slot, {}), list_files(trigger.glob), now)
    watches.files[slot] = watched
    ready = stable_files(watched, now, trigger.stable_for_s)
    if not ready:
        return []
    keys = {f.identity.key for f in ready}
    waiting = unfired(ready, store.triggers.fired_keys(spec.name, trigger.key, keys))
    groups = [waiting] if trigger.batch and waiting else [[f] for f in waiting]
    created = []
    by_key = {f.identity.key: f for f in waiting}
    for group in groups:
        run_id = new_run_id(now)

        def make_run(fresh: list[FireIdentity], run_id: str = run_id) -> NewRun:
            files = [by_key[i.key] for i in fresh]
            payload = {
                "type": "file",
                "path": files[0].path,
                "paths": [f.path for f in files],
                "sizes": [f.size for f in files],
            }
            return _triggered_run(spec, run_id, now.astimezone(UTC).date().isoformat(), payload)

        claim = store.triggers.fire(
            spec.name, trigger.key, [f.identity for f in group], run_id=run_id, make_run=make_run
        )
        if claim is not None:
            created.append(claim.run_id)
    return created


def _fire_after(
    spec: PipelineSpec, trigger: AfterTrigger, store: RunStore, now: datetime
) -> list[str]:
    armed_at = store.triggers.arm(spec.name, trigger.key, now)
    since = max(armed_at, now - AFTER_LOOKBACK)
    upstream_runs = store.triggers.runs_ended_since(trigger.pipeline, since)
    keys = {upstream_identity(r.run_id).key for r in upstream_runs}
    fired = store.triggers.fired_keys(spec.name, trigger.key, keys)
    created = []
    for upstream in qualifying_runs(upstream_runs, trigger.status, armed_at):
        identity = upstream_identity(upstream.run_id)
        if identity.key in fired:
            continue
        run_id = new_run_id(now)
        payload = {
            "type": "after",
            "pipeline": upstream.pipeline,
            "run_id": upstream.run_id,
            "status": upstream.status.value,
            "path": "",
            "paths": [],
        }
        run = _triggered_run(spec, run_id, upstream.ds, payload, RunTrigger.UPSTREAM)
        claim = store.triggers.fire(
            spec.name, trigger.key, [identity], run_id=run_id, make_run=lambda _fresh, r=run: r
        )
        if claim is not None:
            created.append(claim.run_id)
    return created


def _triggered_run(
    spec: PipelineSpec,
    run_id: str,
    ds: str,
    payload: dict[str, Any],
    triggered_by: RunTrigger = RunTrigger.TRIGGER,
) -> NewRun:
    """A queued run of ``spec`` recording its trigger payload in its params (a resume
    renders ``{{ trigger.* }}`` the same)."""
    run = queued_run(spec, run_id=run_id, ds=ds, triggered_by=triggered_by)
    return replace(run, params={**run.params, TRIGGER_PARAM: payload})


__all__ = [
    "AFTER_LOOKBACK",
    "SeenFile",
    "TriggerReport",
    "TriggerWatches",
    "WatchedFile",
    "list_files",
    "observe_files",
    "qualifying_runs",
    "run_trigger_tick",
    "stable_files",
    "unfired",
]
