"""Jobs, their event log and the webhook outbox.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from tuneforge.db.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("active_slot", sa.Integer, nullable=True, unique=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("owner_name", sa.String(50), nullable=False),
        sa.Column("env_name", sa.String(100), nullable=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("run_dir", sa.String(1024), nullable=False),
        sa.Column("output_dir", sa.String(1024), nullable=False),
        sa.Column("num_processes", sa.Integer, nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("pid_started_at", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("log_tail", sa.JSON, nullable=True),
        sa.Column("events_offset", sa.Integer, nullable=False),
        sa.Column("next_index", sa.Integer, nullable=False),
        sa.Column("progress", sa.JSON, nullable=True),
        sa.Column("startup", sa.JSON, nullable=False),
        sa.Column("requested", sa.String(16), nullable=True),
        sa.Column("requested_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False, index=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("job_id", "index", name="uq_job_events_job_index"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("event_index", sa.Integer, nullable=False),
        sa.Column("target", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False, index=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("job_id", "event_index", "target", name="uq_delivery"),
    )


def downgrade() -> None:
    for table in ("webhook_deliveries", "job_events", "jobs"):
        op.drop_table(table)
