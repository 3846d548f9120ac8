"""The state database's tables (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    select,
)

metadata = MetaData()

runs = Table(
    "bp_runs",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("source_path", Text),
    Column("params", JSON, nullable=False),
    Column("ds", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("owner", String(200)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("needs_attention", Boolean, nullable=False, default=False),
    Column("executor", String(20), nullable=False, default="local"),
    Column("external_id", Text),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("slot", DateTime(timezone=True)),  # the logical time of a scheduled/backfill run
    Column("triggered_by", String(20), nullable=False, default="manual"),
    # migration 0011: the run lists' pages, newest first, read along an index without a sort
    Index("ix_bp_runs_created_run", "created_at", "run_id"),
    Index("ix_bp_runs_pipeline_created", "pipeline", "created_at", "run_id"),
    Index("ix_bp_runs_status_created", "status", "created_at", "run_id"),
    Index("ix_bp_runs_pipeline_status_created", "pipeline", "status", "created_at", "run_id"),
    # migration 0009: the monitor's history (last successful runs) and its run-end sweep
    Index("ix_bp_runs_pipeline_status_ended", "pipeline", "status", "ended_at"),
    Index("ix_bp_runs_ended_at", "ended_at"),
)

#: A run's pipeline document, written once with its run (migration 0012). It lives apart
#: from ``bp_runs`` because the engine updates the run's row in every transaction (its
#: owner's heartbeat): with a 1,000-node pipeline inline, each of those updates rewrote
#: ~200 KB in SQLite (the row and its overflow pages, then the WAL). Deleted with its run.
run_specs = Table(
    "bp_run_specs",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("spec", JSON, nullable=False),
    ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
)


def select_full_runs() -> Select[Any]:
    """A select of every column of runs, their pipeline document included (the row
    ``run_record`` reads); add the ``where`` and ``order_by``."""
    return select(*runs.c, run_specs.c.spec).select_from(
        runs.join(run_specs, run_specs.c.run_id == runs.c.run_id)
    )


task_instances = Table(
    "bp_task_instances",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("task_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("state", String(30), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("rows_in", BigInteger),
    Column("rows_out", BigInteger),
    Column("rows_rejected", BigInteger),
    Column("started_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("duration_s", Float),
    Column("error", Text),
    Column("output", JSON),
    ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
)

attempts = Table(
    "bp_attempts",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("task_id", String(200), primary_key=True),
    Column("kind", String(20), primary_key=True, default="run"),
    Column("attempt", Integer, primary_key=True),
    Column("state", String(30), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("log_path", Text),
    #: an attempt run on the engine's thread keeps its log here, not in a file (0013)
    Column("log_text", Text),
    ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
)

callbacks = Table(
    "bp_callbacks",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("callback_id", String(300), primary_key=True),
    Column("task_id", String(200)),
    Column("event", String(30), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("context", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True)),
    Column("error", Text),
    ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
)

# -- the scheduler (migration 0003) ------------------------------------------------------------
# Instants are stored in UTC (SQLite keeps no offset; the store converts before writing).

#: One row per slot ever claimed: the unique (pipeline, slot) key makes a slot run once. The
#: claim outlives its run on purpose (no foreign key): purging history must not make a slot
#: due again. ``run_id`` is the slot's current run (a backfill rerun replaces it).
slot_claims = Table(
    "bp_slot_claims",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("slot", DateTime(timezone=True), primary_key=True),
    Column("run_id", String(100), nullable=False),
    Column("triggered_by", String(20), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

#: Per pipeline: paused or not, and the newest slot the schedule has dealt with.
schedule_states = Table(
    "bp_schedule_states",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_reason", Text),
    Column("paused_at", DateTime(timezone=True)),
    Column("last_slot", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: "Missed while down": the slots a schedule did not run when it came back (or was unpaused).
missed_slots = Table(
    "bp_missed_slots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(200), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("catchup", String(10), nullable=False),
    Column("slot_count", Integer, nullable=False),
    Column("slots", JSON, nullable=False),  # ISO-8601 UTC instants, oldest first (capped)
    # migration 0010: when the monitor alerted on the record (None: not yet)
    Column("alerted_at", DateTime(timezone=True)),
    Index("ix_bp_missed_slots_pipeline", "pipeline"),
)

#: A manual trigger's idempotency key: the same key on the same pipeline gives the same run.
idempotency_keys = Table(
    "bp_idempotency_keys",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("idempotency_key", String(200), primary_key=True),
    Column("run_id", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# -- server sessions (migration 0004) ----------------------------------------------------------

#: The database server sessions (PostgreSQL backends) each attempt opened, so a dead process's
#: statements can be ended on the server by ``cancel``, ``runs reap`` and ``resume``.
server_sessions = Table(
    "bp_server_sessions",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("task_id", String(200), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("connection", String(200), primary_key=True),
    Column("backend_pid", Integer, primary_key=True),
    Column("backend_start", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
)

# -- triggers (migration 0007) -----------------------------------------------------------------

#: One row per file (path, size, mtime) or upstream run a trigger fired for: the unique key
#: makes each start one run, inserted in the transaction that creates the run.
#: ``fire_key`` is a SHA-256 of the identity; ``detail`` the path or upstream run id.
trigger_fires = Table(
    "bp_trigger_fires",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("trigger_key", String(500), primary_key=True),
    Column("fire_key", String(64), primary_key=True),
    Column("detail", Text, nullable=False),
    Column("run_id", String(100), nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
)

#: When ``serve`` first saw each trigger: an ``after`` trigger fires only for upstream runs
#: that ended since (adding one never replays old runs).
trigger_states = Table(
    "bp_trigger_states",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("trigger_key", String(500), primary_key=True),
    Column("armed_at", DateTime(timezone=True), nullable=False),
)
