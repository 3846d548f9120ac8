"""Runs, task instances and attempts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_runs",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source_path", sa.Text),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("ds", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("owner", sa.String(200)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("needs_attention", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_bp_runs_created_at", "bp_runs", ["created_at"])
    op.create_index("ix_bp_runs_pipeline", "bp_runs", ["pipeline"])
    op.create_table(
        "bp_task_instances",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_in", sa.BigInteger),
        sa.Column("rows_out", sa.BigInteger),
        sa.Column("rows_rejected", sa.BigInteger),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("duration_s", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("output", sa.JSON),
        sa.ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "bp_attempts",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True, server_default="run"),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("log_path", sa.Text),
        sa.ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("bp_attempts")
    op.drop_table("bp_task_instances")
    op.drop_index("ix_bp_runs_pipeline", "bp_runs")
    op.drop_index("ix_bp_runs_created_at", "bp_runs")
    op.drop_table("bp_runs")
