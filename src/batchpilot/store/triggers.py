"""The triggers' part of the state store: each file or upstream run fires once, in the
transaction that creates its run.

A fire is a row under the unique key (pipeline, trigger, identity), the identity being a
SHA-256 of a file's (path, size, mtime) or of an upstream run's id.
:meth:`TriggerStore.fire` inserts the rows with ``ON CONFLICT DO NOTHING`` and creates
the run only when one went in, in the same transaction: a process killed mid-fire
leaves neither; two processes firing one file on PostgreSQL give one run (the second
insert waits for the first transaction, then does nothing).

Reached as ``RunStore.triggers``; every method is one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from batchpilot.states import RunStatus
from batchpilot.store.records import RunSummaryRecord, aware, run_summary_record, utcnow
from batchpilot.store.run_queries import RUN_SUMMARY_COLUMNS
from batchpilot.store.run_rows import NewRun, as_utc, insert_run
from batchpilot.store.schedule_records import RunClaim
from batchpilot.store.schedules import _insert_if_absent
from batchpilot.store.tables import runs, trigger_fires, trigger_states
from batchpilot.store.transaction import Wrapped

_ENDED = [RunStatus.SUCCESS.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value]


@dataclass(frozen=True)
class FireIdentity:
    """What a trigger fires for once: ``key`` (a SHA-256) and ``detail`` (the path, the run id)."""

    key: str
    detail: str


def file_identity(path: str, size: int, mtime_ns: int) -> FireIdentity:
    """A file's identity: the same path rewritten (new size or mtime) is a new file."""
    digest = hashlib.sha256(f"file\0{path}\0{size}\0{mtime_ns}".encode()).hexdigest()
    return FireIdentity(digest, path)


def upstream_identity(run_id: str) -> FireIdentity:
    """An upstream run's identity."""
    return FireIdentity(hashlib.sha256(f"run\0{run_id}".encode()).hexdigest(), run_id)


@dataclass(frozen=True)
class TriggerFireRecord:
    """A recorded fire: which trigger, for what, and the run it created."""

    pipeline: str
    trigger_key: str
    fire_key: str
    detail: str
    run_id: str
    fired_at: datetime


class TriggerStore:
    """Trigger fires (exactly once per file / upstream run) and when each trigger was armed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def fire(
        self,
        pipeline: str,
        trigger_key: str,
        identities: Sequence[FireIdentity],
        *,
        run_id: str,
        make_run: Callable[[list[FireIdentity]], NewRun],
    ) -> RunClaim | None:
        """Record ``identities`` as fired and create ``make_run(the ones new)``, whose id must
        be ``run_id``, in one transaction. None (nothing written) when all fired before."""
        with Wrapped(self.engine, begin=True) as conn:
            fresh = [
                identity
                for identity in identities
                if _insert_if_absent(
                    conn,
                    trigger_fires,
                    {
                        "pipeline": pipeline,
                        "trigger_key": trigger_key,
                        "fire_key": identity.key,
                        "detail": identity.detail,
                        "run_id": run_id,
                        "fired_at": utcnow(),
                    },
                    keys=("pipeline", "trigger_key", "fire_key"),
                )
            ]
            if not fresh:
                return None
            run = make_run(fresh)
            if run.run_id != run_id:
                raise ValueError(f"make_run gave run {run.run_id}, expected {run_id}")
            insert_run(conn, run)
        return RunClaim(run_id, created=True)

    def fired_keys(
        self, pipeline: str, trigger_key: str, among: Collection[str] | None = None
    ) -> set[str]:
        """The identities (keys) this trigger of ``pipeline`` has fired for (only those in
        ``among`` when given: a pass asks about what it sees, not the whole history)."""
        if among is not None and not among:
            return set()
        query = select(trigger_fires.c.fire_key).where(
            trigger_fires.c.pipeline == pipeline, trigger_fires.c.trigger_key == trigger_key
        )
        if among is not None:
            query = query.where(trigger_fires.c.fire_key.in_(sorted(among)))
        with Wrapped(self.engine, begin=False) as conn:
            return {row[0] for row in conn.execute(query)}

    def fires(self, pipeline: str | None = None) -> list[TriggerFireRecord]:
        """Every recorded fire (of one pipeline, or all), oldest first."""
        query = select(trigger_fires).order_by(trigger_fires.c.fired_at, trigger_fires.c.detail)
        if pipeline is not None:
            query = query.where(trigger_fires.c.pipeline == pipeline)
        with Wrapped(self.engine, begin=False) as conn:
            return [
                TriggerFireRecord(
                    pipeline=row["pipeline"],
                    trigger_key=row["trigger_key"],
                    fire_key=row["fire_key"],
                    detail=row["detail"],
                    run_id=row["run_id"],
                    fired_at=aware(row["fired_at"]),  # type: ignore[arg-type]
                )
                for row in conn.execute(query).mappings()
            ]

    def arm(self, pipeline: str, trigger_key: str, now: datetime) -> datetime:
        """When the trigger was first seen: ``now`` the first time, the recorded instant after."""
        with Wrapped(self.engine, begin=True) as conn:
            _insert_if_absent(
                conn,
                trigger_states,
                {"pipeline": pipeline, "trigger_key": trigger_key, "armed_at": as_utc(now)},
                keys=("pipeline", "trigger_key"),
            )
            armed = conn.execute(
                select(trigger_states.c.armed_at).where(
                    trigger_states.c.pipeline == pipeline,
                    trigger_states.c.trigger_key == trigger_key,
                )
            ).scalar_one()
        return aware(armed)  # type: ignore[return-value]

    def runs_ended_since(self, pipeline: str, since: datetime) -> list[RunSummaryRecord]:
        """Runs of ``pipeline`` that ended (success, failed, cancelled) at or after ``since``,
        in the order they ended. Without their pipeline document: ``serve`` reads these on
        every pass (a day of a 1,000-node pipeline's runs, with it: 80-150 ms of CPU)."""
        query = (
            select(*RUN_SUMMARY_COLUMNS)
            .where(
                runs.c.pipeline == pipeline,
                runs.c.status.in_(_ENDED),
                runs.c.ended_at >= as_utc(since),
            )
            .order_by(runs.c.ended_at, runs.c.run_id)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return [run_summary_record(row) for row in conn.execute(query).mappings()]


__all__ = [
    "FireIdentity",
    "TriggerFireRecord",
    "TriggerStore",
    "file_identity",
    "upstream_identity",
]
