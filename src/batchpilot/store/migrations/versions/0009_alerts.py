"""Alert episodes, the runs the monitor has evaluated, and the indexes its history reads use.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_alerts",
        sa.Column("alert_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("episode_key", sa.String(64), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(30), nullable=False),
        sa.Column("task", sa.String(200)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.String(100)),
        sa.Column("last_run_id", sa.String(100)),
        sa.Column("resolved_by_run_id", sa.String(100)),
        sa.Column("observed", sa.Text, nullable=False),
        sa.Column("baseline", sa.Text, nullable=False),
        sa.Column("threshold", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("reminders_sent", sa.Integer, nullable=False),
        sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "uq_bp_alerts_open_episode",
        "bp_alerts",
        ["episode_key"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index("ix_bp_alerts_pipeline_state", "bp_alerts", ["pipeline", "state"])
    op.create_index("ix_bp_alerts_state", "bp_alerts", ["state", "alert_id"])
    op.create_table(
        "bp_monitored_runs",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_bp_runs_pipeline_status_ended", "bp_runs", ["pipeline", "status", "ended_at"]
    )
    op.create_index("ix_bp_runs_ended_at", "bp_runs", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_bp_runs_ended_at", table_name="bp_runs")
    op.drop_index("ix_bp_runs_pipeline_status_ended", table_name="bp_runs")
    op.drop_table("bp_monitored_runs")
    op.drop_table("bp_alerts")
