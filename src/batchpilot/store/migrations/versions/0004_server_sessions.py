"""The database server sessions each attempt opened, so a dead process's statements can
be stopped on the server by ``cancel``, ``runs reap`` and ``resume``.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_server_sessions",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("connection", sa.String(200), primary_key=True),
        sa.Column("backend_pid", sa.Integer, primary_key=True),
        sa.Column("backend_start", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("bp_server_sessions")
