"""Runs on other executors (Airflow), cancel requests, and the callback outbox.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bp_runs") as batch:
        batch.add_column(
            sa.Column("executor", sa.String(20), nullable=False, server_default="local")
        )
        batch.add_column(sa.Column("external_id", sa.Text))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "bp_callbacks",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("callback_id", sa.String(300), primary_key=True),
        sa.Column("task_id", sa.String(200)),
        sa.Column("event", sa.String(30), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("bp_callbacks")
    with op.batch_alter_table("bp_runs") as batch:
        batch.drop_column("cancel_requested")
        batch.drop_column("external_id")
        batch.drop_column("executor")
