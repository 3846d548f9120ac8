"""Triggers: each file / upstream run a trigger fired for, and when each trigger was armed.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_trigger_fires",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("trigger_key", sa.String(500), primary_key=True),
        sa.Column("fire_key", sa.String(64), primary_key=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(100), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bp_trigger_states",
        sa.Column("pipeline", sa.String(200), primary_key=True),
        sa.Column("trigger_key", sa.String(500), primary_key=True),
        sa.Column("armed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bp_trigger_states")
    op.drop_table("bp_trigger_fires")
