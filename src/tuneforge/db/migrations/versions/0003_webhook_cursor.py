"""The webhook outbox's cursor into each job's event log.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("webhook_index", sa.Integer, nullable=False, server_default="0"))
    # Events stored before this revision already had their delivery rows made: start the cursor after them.
    op.execute("UPDATE jobs SET webhook_index = next_index")


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35): a batch rebuild of `jobs` would cascade-delete its events.
    op.drop_column("jobs", "webhook_index")
