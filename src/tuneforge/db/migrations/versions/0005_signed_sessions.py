"""Signed session tokens: `users.session_epoch` ends all of a user's sessions at once, `revoked_sessions` keeps the
tokens logged out early. The old table of live sessions goes (those sessions end: people log in again).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from tuneforge.db.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "revoked_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
        sa.Column("revoked_at", UTCDateTime, nullable=False),
    )
    op.drop_table("auth_sessions")


def downgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
    )
    op.drop_table("revoked_sessions")
    # Dropping a column in SQLite rebuilds `users`, which (foreign keys on) cascade-deletes every API key and job:
    # there the unused column stays.
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column("users", "session_epoch")
