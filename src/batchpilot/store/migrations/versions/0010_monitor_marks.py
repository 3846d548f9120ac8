"""The monitor's marks: which "missed while down" records it has alerted on.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "bp_missed_slots", sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True)
    )
    # records from before this revision are history, not news: nobody is paged for them
    op.execute("UPDATE bp_missed_slots SET alerted_at = detected_at")


def downgrade() -> None:
    with op.batch_alter_table("bp_missed_slots") as batch:
        batch.drop_column("alerted_at")
