"""The scheduler: slot claims, per-pipeline schedule state, missed slots, idempotency keys,
and each run's slot and trigger.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bp_runs") as batch:
        batch.add_column(sa.Column("slot", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("triggered_by", sa.String(20), nullable=False, server_default="manual")
        )
    op.create_table(
        "bp_slot_claims",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("slot", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("run_id", sa.String(100), nullable=False),
        sa.Column("triggered_by", sa.String(20), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bp_schedule_states",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("paused_reason", sa.Text),
        sa.Column("paused_at", sa.DateTime(timezone=True)),
        sa.Column("last_slot", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bp_missed_slots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("catchup", sa.String(10), nullable=False),
        sa.Column("slot_count", sa.Integer, nullable=False),
        sa.Column("slots", sa.JSON, nullable=False),
    )
    op.create_index("ix_bp_missed_slots_pipeline", "bp_missed_slots", ["pipeline"])
    op.create_table(
        "bp_idempotency_keys",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("run_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bp_idempotency_keys")
    op.drop_index("ix_bp_missed_slots_pipeline", table_name="bp_missed_slots")
    op.drop_table("bp_missed_slots")
    op.drop_table("bp_schedule_states")
    op.drop_table("bp_slot_claims")
    with op.batch_alter_table("bp_runs") as batch:
        batch.drop_column("triggered_by")
        batch.drop_column("slot")
