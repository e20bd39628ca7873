"""The GPU-aware queue: several jobs may be active at once (the single `active_slot` goes), each queued job records
what it asks for (GPU count, device ids) and its priority, and `device_leases` holds which job has which GPU.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from tuneforge.db.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("active_slot")
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("gpu_count", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("gpu_ids", sa.JSON, nullable=True))
    op.create_table(
        "device_leases",
        sa.Column("device_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("leased_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("device_leases")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("gpu_ids")
        batch.drop_column("gpu_count")
        batch.drop_column("priority")
        batch.add_column(sa.Column("active_slot", sa.Integer, nullable=True))
        batch.create_unique_constraint("uq_jobs_active_slot", ["active_slot"])
    # One active job at a time again: the most recent active one keeps the slot.
    op.execute("UPDATE jobs SET active_slot = 1 WHERE id = (SELECT id FROM jobs WHERE state IN "
               "('queued', 'starting', 'running') ORDER BY created_at DESC LIMIT 1)")
