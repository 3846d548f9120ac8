"""``bp_attempts.log_text``: the log of an attempt the engine ran on its own thread.

A step that never blocks (``empty``) returns at once; its log is two lines of the
engine's own. Writing each to a file of its own cost a file creation per task
(0.04 ms, and up to 1 ms on a filesystem without a journal that has just deleted
many files); the lines are now kept with the attempt's record instead. NULL for an
attempt with a log file (``log_path``).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bp_attempts", sa.Column("log_text", sa.Text()))


def downgrade() -> None:
    # a plain ALTER TABLE … DROP COLUMN, as in 0012 (batch mode would copy the table)
    op.drop_column("bp_attempts", "log_text")
