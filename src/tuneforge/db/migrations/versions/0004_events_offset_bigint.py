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
    if op.get_bind().dialect.name != "sqlite":
        _refuse_offsets_past_32_bits()
    _retype(sa.BigInteger(), sa.Integer())


def _refuse_offsets_past_32_bits() -> None:
    jobs = op.get_bind().execute(sa.text("SELECT id FROM jobs WHERE events_offset > 2147483647")).scalars().all()
    if jobs:
        raise RuntimeError(f"cannot downgrade below 0004: the events files of jobs {', '.join(jobs)} are read past "
                           "2 GiB, which revision 0003 cannot record; delete those jobs first or stay on 0004")


def _retype(old: sa.types.TypeEngine, new: sa.types.TypeEngine) -> None:
    # SQLite's INTEGER holds 64 bits already, and changing a column's type there means a batch rebuild of
    # `jobs`, which (foreign keys on) cascade-deletes every job's events: nothing to do there.
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("jobs", "events_offset", type_=new, existing_type=old, existing_nullable=False)
