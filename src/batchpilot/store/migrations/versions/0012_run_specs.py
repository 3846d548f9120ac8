"""A run's pipeline document moves out of ``bp_runs`` into ``bp_run_specs``.

The engine updates the run's row in every transaction (its owner's heartbeat). With
the document inline, each of those updates rewrote it: ~200 KB for a 1,000-node
pipeline in SQLite (the row's overflow pages, then as much again in the WAL), and
every read of a column after it walked those pages.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_run_specs",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["bp_runs.run_id"], ondelete="CASCADE"),
    )
    op.execute("INSERT INTO bp_run_specs (run_id, spec) SELECT run_id, spec FROM bp_runs")
    # a plain ALTER TABLE … DROP COLUMN (SQLite 3.35+), not batch mode: batch mode copies
    # bp_runs and drops the original, and with foreign keys on, dropping it deletes every
    # row that references a run (tasks, attempts, the specs just copied)
    op.drop_column("bp_runs", "spec")


def downgrade() -> None:
    # nullable, for the same reason: making it NOT NULL in SQLite means copying bp_runs
    op.add_column("bp_runs", sa.Column("spec", sa.JSON, nullable=True))
    op.execute(
        "UPDATE bp_runs SET spec ="
        " (SELECT s.spec FROM bp_run_specs s WHERE s.run_id = bp_runs.run_id)"
    )
    op.drop_table("bp_run_specs")
