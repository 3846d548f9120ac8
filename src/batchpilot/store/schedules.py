"""The scheduler's part of the state store: each slot claimed once, in the transaction that
creates its run.

A slot's claim is a row under the unique key (pipeline, slot). :meth:`ScheduleStore.claim_slot`
inserts it with ``ON CONFLICT DO NOTHING`` and, only when the insert took, creates the run
in the same transaction. Two processes claiming one slot on PostgreSQL: the second insert
waits for the first transaction, then does nothing and reads the first run's id. A process
killed mid-claim leaves neither the claim nor the run. The same holds for a manual trigger's
idempotency key.

Reached as ``RunStore.schedules``; every method is one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from batchpilot.errors import SpecError, StoreError
from batchpilot.states import RunTrigger
from batchpilot.store.records import utcnow
from batchpilot.store.run_rows import NewRun, as_utc, insert_run, insert_runs
from batchpilot.store.schedule_records import (
    MAX_LISTED_MISSED_SLOTS,
    MissedSlotsRecord,
    RunClaim,
    ScheduleState,
    SlotClaimRecord,
    missed_slots_record,
    schedule_state,
    slot_claim_record,
)
from batchpilot.store.tables import (
    idempotency_keys,
    missed_slots,
    runs,
    schedule_states,
    slot_claims,
)
from batchpilot.store.transaction import Wrapped
from batchpilot.store.upserts import dialect_insert

#: The longest idempotency key accepted (the column's width).
MAX_IDEMPOTENCY_KEY_LENGTH = 200


@dataclass(frozen=True)
class SlotClaimRequest:
    """One slot to claim with its run (see :meth:`ScheduleStore.claim_slot` for the rest)."""

    run: NewRun
    advance_schedule: bool = False
    missed: Sequence[datetime] = ()
    catchup: str = "last"


class ScheduleStore:
    """Slot claims, per-pipeline schedule state, missed slots and idempotency keys."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- slots ----------------------------------------------------------------------------

    def claim_slot(
        self,
        run: NewRun,
        *,
        advance_schedule: bool = False,
        missed: Sequence[datetime] = (),
        catchup: str = "last",
    ) -> RunClaim:
        """Claim ``run.slot`` of ``run.pipeline`` and create ``run``, in one transaction.

        A slot claimed before returns the run that holds it (``created`` False)
        and writes nothing. With ``advance_schedule`` the pipeline's last slot
        moves forward to this one, and ``missed`` (slots the schedule will not
        run, per its ``catchup``) is recorded, in the same transaction.
        Raises ``ValueError`` when the run has no slot.
        """
        request = SlotClaimRequest(run, advance_schedule, tuple(missed), catchup)
        return self.claim_slots([request])[0]

    def claim_slots(self, requests: Sequence[SlotClaimRequest]) -> list[RunClaim]:
        """Claim many slots, each with its run, in one transaction: :meth:`claim_slot` for
        each request, for a handful of statements in all. Returns one claim per request,
        in order.

        A slot claimed before (or twice in ``requests``) returns the run that holds it,
        ``created`` False, and writes nothing for that request. The rows are written
        in (pipeline, slot) order, so two schedulers claiming the same slots on
        PostgreSQL wait for each other instead of deadlocking. Killed mid-way, the
        transaction leaves no claim and no run. Raises ``ValueError`` when a run has
        no slot.
        """
        if not requests:
            return []
        slots = [_slot_of(r.run) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (requests[i].run.pipeline, slots[i]))
        first_of: dict[tuple[str, datetime], int] = {}
        for i in order:
            first_of.setdefault((requests[i].run.pipeline, slots[i]), i)
        unique = [i for i in order if first_of[(requests[i].run.pipeline, slots[i])] == i]
        now = utcnow()
        with Wrapped(self.engine, begin=True) as conn:
            taken = _insert_claims(
                conn,
                [
                    {
                        "pipeline": requests[i].run.pipeline,
                        "slot": slots[i],
                        "run_id": requests[i].run.run_id,
                        "triggered_by": RunTrigger(requests[i].run.triggered_by).value,
                        "claimed_at": now,
                    }
                    for i in unique
                ],
            )
            created = [i for i in unique if requests[i].run.run_id in taken]
            insert_runs(conn, [requests[i].run for i in created])
            advanced = [i for i in created if requests[i].advance_schedule]
            _advance_last_slots(conn, {requests[i].run.pipeline: slots[i] for i in advanced})
            for i in advanced:
                _record_missed(
                    conn, requests[i].run.pipeline, requests[i].missed, requests[i].catchup
                )
            claims = []
            for i, request in enumerate(requests):
                pipeline, run_id = request.run.pipeline, request.run.run_id
                if first_of[(pipeline, slots[i])] == i and run_id in taken:
                    claims.append(RunClaim(run_id, created=True))
                else:
                    holder = self._claimed_run_id(conn, pipeline, slots[i])
                    claims.append(RunClaim(holder, created=False))
        return claims

    def reclaim_slot(self, run: NewRun, *, replacing: str) -> RunClaim:
        """Give a claimed slot a new run (a backfill's rerun of a failed slot), if its run is
        still ``replacing``: of two processes rerunning one slot, one creates a run.

        Returns the slot's run afterwards; ``created`` says whether it is ``run``.
        Raises ``ValueError`` when the run has no slot, :class:`StoreError` when
        the slot was never claimed.
        """
        slot = _slot_of(run)
        with Wrapped(self.engine, begin=True) as conn:
            moved = conn.execute(
                update(slot_claims)
                .where(
                    slot_claims.c.pipeline == run.pipeline,
                    slot_claims.c.slot == slot,
                    slot_claims.c.run_id == replacing,
                )
                .values(
                    run_id=run.run_id,
                    triggered_by=RunTrigger(run.triggered_by).value,
                    claimed_at=utcnow(),
                )
            )
            if moved.rowcount != 1:
                return RunClaim(self._claimed_run_id(conn, run.pipeline, slot), created=False)
            insert_run(conn, run)
        return RunClaim(run.run_id, created=True)

    def slot_claims(
        self, pipeline: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> list[SlotClaimRecord]:
        """The pipeline's claimed slots in ``[start, end)`` (aware bounds), oldest first, with
        each current run's status."""
        query = (
            select(slot_claims, runs.c.status)
            .select_from(slot_claims.outerjoin(runs, runs.c.run_id == slot_claims.c.run_id))
            .where(slot_claims.c.pipeline == pipeline)
            .order_by(slot_claims.c.slot)
        )
        if start is not None:
            query = query.where(slot_claims.c.slot >= as_utc(start))
        if end is not None:
            query = query.where(slot_claims.c.slot < as_utc(end))
        with Wrapped(self.engine, begin=False) as conn:
            return [slot_claim_record(row) for row in conn.execute(query).mappings()]

    def skip_slots(
        self, pipeline: str, *, last_slot: datetime, missed: Sequence[datetime], catchup: str
    ) -> None:
        """Move the pipeline's last slot to ``last_slot`` without running anything (catchup
        ``none``) and record ``missed``, in one transaction."""
        with Wrapped(self.engine, begin=True) as conn:
            _advance_last_slot(conn, pipeline, as_utc(last_slot))  # type: ignore[arg-type]
            _record_missed(conn, pipeline, missed, catchup)

    def record_missed_slots(self, pipeline: str, missed: Sequence[datetime], catchup: str) -> None:
        """Record slots missed while the scheduler was down, on their own (``catchup: all``
        when no run can start yet); nothing when ``missed`` is empty."""
        with Wrapped(self.engine, begin=True) as conn:
            _record_missed(conn, pipeline, missed, catchup)

    def missed_slots(self, pipeline: str | None = None) -> list[MissedSlotsRecord]:
        """The "missed while down" records (of one pipeline, or all), oldest first."""
        query = select(missed_slots).order_by(missed_slots.c.id)
        if pipeline is not None:
            query = query.where(missed_slots.c.pipeline == pipeline)
        with Wrapped(self.engine, begin=False) as conn:
            return [missed_slots_record(row) for row in conn.execute(query).mappings()]

    def missed_slots_to_alert(self, *, limit: int = 100) -> list[MissedSlotsRecord]:
        """The "missed while down" records the monitor has not alerted on, oldest first."""
        query = (
            select(missed_slots)
            .where(missed_slots.c.alerted_at.is_(None))
            .order_by(missed_slots.c.id)
            .limit(limit)
        )
        with Wrapped(self.engine, begin=False) as conn:
            return [missed_slots_record(row) for row in conn.execute(query).mappings()]

    # -- schedule state -------------------------------------------------------------------

    def schedule_state(self, pipeline: str) -> ScheduleState:
        """The pipeline's schedule state (not paused, no slot yet, when never recorded)."""
        query = select(schedule_states).where(schedule_states.c.pipeline == pipeline)
        with Wrapped(self.engine, begin=False) as conn:
            row = conn.execute(query).mappings().first()
        return ScheduleState(pipeline) if row is None else schedule_state(row)

    def schedule_states(self) -> list[ScheduleState]:
        """Every recorded schedule state, by pipeline name."""
        query = select(schedule_states).order_by(schedule_states.c.pipeline)
        with Wrapped(self.engine, begin=False) as conn:
            return [schedule_state(row) for row in conn.execute(query).mappings()]

    def set_paused(
        self, pipeline: str, paused: bool, *, reason: str | None = None
    ) -> ScheduleState:
        """Pause (with a reason, e.g. an auto-pause after failures) or unpause the schedule;
        returns its state. The last slot is kept: on unpause the scheduler applies
        ``catchup`` to the slots since."""
        now = utcnow()
        values = {
            "paused": paused,
            "paused_reason": reason if paused else None,
            "paused_at": now if paused else None,
            "updated_at": now,
        }
        with Wrapped(self.engine, begin=True) as conn:
            _ensure_state_row(conn, pipeline)
            conn.execute(
                update(schedule_states)
                .where(schedule_states.c.pipeline == pipeline)
                .values(**values)
            )
        return self.schedule_state(pipeline)

    # -- idempotency keys -----------------------------------------------------------------

    def create_run_once(self, run: NewRun, *, idempotency_key: str) -> RunClaim:
        """Create ``run`` unless ``idempotency_key`` was used on this pipeline before; then
        return that run's id (``created`` False) and write nothing.

        Raises :class:`SpecError` for an empty key or one over 200 characters.
        """
        if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise SpecError(
                f"an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters, got "
                f"{len(idempotency_key)}",
                field="idempotency_key",
            )
        with Wrapped(self.engine, begin=True) as conn:
            created = _insert_if_absent(
                conn,
                idempotency_keys,
                {
                    "pipeline": run.pipeline,
                    "idempotency_key": idempotency_key,
                    "run_id": run.run_id,
                    "created_at": utcnow(),
                },
                keys=("pipeline", "idempotency_key"),
            )
            if not created:
                existing = conn.execute(
                    select(idempotency_keys.c.run_id).where(
                        idempotency_keys.c.pipeline == run.pipeline,
                        idempotency_keys.c.idempotency_key == idempotency_key,
                    )
                ).scalar_one()
                return RunClaim(existing, created=False)
            insert_run(conn, run)
        return RunClaim(run.run_id, created=True)

    # -- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _claimed_run_id(conn: Any, pipeline: str, slot: datetime) -> str:
        run_id = conn.execute(
            select(slot_claims.c.run_id).where(
                slot_claims.c.pipeline == pipeline, slot_claims.c.slot == slot
            )
        ).scalar()
        if run_id is None:
            raise StoreError(f"slot {slot.isoformat()} of pipeline '{pipeline}' was never claimed")
        return str(run_id)


def _slot_of(run: NewRun) -> datetime:
    slot = as_utc(run.slot)
    if slot is None:
        raise ValueError(f"run {run.run_id} has no slot to claim")
    return slot


def _insert_if_absent(conn: Any, table: Any, values: dict[str, Any], keys: Sequence[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when the row went in. On PostgreSQL a
    concurrent insert of the same key waits for the other transaction to end."""
    statement = dialect_insert(conn.dialect.name, table)
    key_column = table.c[keys[0]]
    inserted = conn.execute(
        statement.values(**values)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(key_column)  # a row back only when the insert took (rowcount is not reliable)
    ).first()
    return inserted is not None


def _insert_rows_if_absent(
    conn: Any, table: Any, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT DO NOTHING for many rows (one statement, many parameter sets)."""
    statement = dialect_insert(conn.dialect.name, table)
    statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(statement, list(rows))


def _insert_claims(conn: Any, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert slot claims that are not there yet; returns the run ids of those that went
    in. On PostgreSQL a concurrent insert of the same (pipeline, slot) waits for the other
    transaction to end, then does nothing."""
    statement = (
        dialect_insert(conn.dialect.name, slot_claims)
        .on_conflict_do_nothing(index_elements=["pipeline", "slot"])
        .returning(slot_claims.c.run_id)  # a row back only for a claim that took
    )
    return {row[0] for row in conn.execute(statement, list(rows))}


def _ensure_state_row(conn: Any, pipeline: str) -> None:
    _insert_if_absent(
        conn,
        schedule_states,
        {"pipeline": pipeline, "paused": False, "updated_at": utcnow()},
        keys=("pipeline",),
    )


def _advance_last_slot(conn: Any, pipeline: str, slot: datetime) -> None:
    """Move the last slot forward to ``slot``, never back (two schedulers may race)."""
    _advance_last_slots(conn, {pipeline: slot})


def _advance_last_slots(conn: Any, newest: dict[str, datetime]) -> None:
    """Move each pipeline's last slot forward to its ``newest``, never back (two schedulers
    may race), in pipeline order; two statements however many pipelines."""
    if not newest:
        return
    now = utcnow()
    pipelines = sorted(newest)
    _insert_rows_if_absent(
        conn,
        schedule_states,
        [{"pipeline": p, "paused": False, "updated_at": now} for p in pipelines],
        keys=("pipeline",),
    )
    column = schedule_states.c.last_slot
    conn.execute(
        update(schedule_states)
        .where(
            schedule_states.c.pipeline == bindparam("p_pipeline"),
            column.is_(None) | (column < bindparam("p_slot")),
        )
        .values(last_slot=bindparam("p_slot"), updated_at=bindparam("p_now")),
        [{"p_pipeline": p, "p_slot": newest[p], "p_now": now} for p in pipelines],
    )


def _record_missed(conn: Any, pipeline: str, missed: Sequence[datetime], catchup: str) -> None:
    if not missed:
        return
    instants = sorted(as_utc(s) for s in missed)  # type: ignore[type-var]
    conn.execute(
        missed_slots.insert().values(
            pipeline=pipeline,
            detected_at=utcnow(),
            catchup=catchup,
            slot_count=len(instants),
            slots=[s.isoformat() for s in instants[:MAX_LISTED_MISSED_SLOTS]],  # type: ignore[union-attr]
        )
    )


__all__ = ["MAX_IDEMPOTENCY_KEY_LENGTH", "ScheduleStore", "SlotClaimRequest"]
