"""The notification outbox: messages waiting for, or done with, delivery to a channel.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_outbox",
        sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("channel", "idempotency_key", name="uq_bp_outbox_channel_key"),
    )
    op.create_index("ix_bp_outbox_due", "bp_outbox", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_bp_outbox_due", table_name="bp_outbox")
    op.drop_table("bp_outbox")
