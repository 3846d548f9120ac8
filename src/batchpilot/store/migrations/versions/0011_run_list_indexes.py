"""Indexes that serve the run lists newest first without a sort: by creation, by pipeline,
by status, by pipeline and status (each ending in ``created_at, run_id``, the order of
the pages and their cursors).

They replace ``ix_bp_runs_created_at`` and ``ix_bp_runs_pipeline``, which are their
prefixes. Without them a page of one pipeline's runs sorted all of that pipeline's runs
(50 ms on 100,000 runs in SQLite), and the first page sorted its ties on ``run_id``.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_NEW = {
    "ix_bp_runs_created_run": ["created_at", "run_id"],
    "ix_bp_runs_pipeline_created": ["pipeline", "created_at", "run_id"],
    "ix_bp_runs_status_created": ["status", "created_at", "run_id"],
    "ix_bp_runs_pipeline_status_created": ["pipeline", "status", "created_at", "run_id"],
}


def upgrade() -> None:
    for name, columns in _NEW.items():
        op.create_index(name, "bp_runs", columns)
    op.drop_index("ix_bp_runs_created_at", table_name="bp_runs")
    op.drop_index("ix_bp_runs_pipeline", table_name="bp_runs")


def downgrade() -> None:
    op.create_index("ix_bp_runs_created_at", "bp_runs", ["created_at"])
    op.create_index("ix_bp_runs_pipeline", "bp_runs", ["pipeline"])
    for name in _NEW:
        op.drop_index(name, table_name="bp_runs")
