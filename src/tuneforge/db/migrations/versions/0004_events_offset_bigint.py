"""`jobs.events_offset` as a 64-bit integer: an events file with image previews can pass 2 GiB.

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
    _retype(sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    _retype(sa.BigInteger(), sa.Integer())


def _retype(old: sa.types.TypeEngine, new: sa.types.TypeEngine) -> None:
    # SQLite's INTEGER holds 64 bits already, and changing a column's type there means a batch rebuild of
    # `jobs`, which (foreign keys on) cascade-deletes every job's events: nothing to do there.
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("jobs", "events_offset", type_=new, existing_type=old, existing_nullable=False)
