"""Backfills: each ``batchpilot backfill`` (pipeline, range, options, status) and its runs.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_backfills",
        sa.Column("backfill_id", sa.String(100), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("range_key", sa.String(400), nullable=False),
        sa.Column("range_start", sa.String(40), nullable=False),
        sa.Column("range_end", sa.String(40), nullable=False),
        sa.Column("every", sa.String(40)),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("slot_count", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bp_backfills_range", "bp_backfills", ["pipeline", "range_key"])
    op.create_table(
        "bp_backfill_runs",
        sa.Column("backfill_id", sa.String(100), primary_key=True),
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("bp_backfill_runs")
    op.drop_index("ix_bp_backfills_range", table_name="bp_backfills")
    op.drop_table("bp_backfills")
