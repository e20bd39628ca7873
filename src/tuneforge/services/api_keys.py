"""API keys: `st_` + 32 alphanumerics, shown once, stored as a SHA-256 digest, revocable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.engine import commit_if_possible
from tuneforge.db.models import ApiKey, User, fits_id
from tuneforge.errors import NotFound
from tuneforge.schemas.users import ApiKeyCreate, ApiKeyPublic
from tuneforge.services.secrets import digest, looks_like_api_key, new_api_key

LAST_USED_RESOLUTION = timedelta(minutes=1)


def to_public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id,
        name=key.name,
        key_prefix=key.key_prefix,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
    )


def create(db: Session, user: User, data: ApiKeyCreate) -> tuple[str, ApiKey]:
    key = new_api_key()
    expires = datetime.now(UTC) + timedelta(days=data.expires_days) if data.expires_days else None
    row = ApiKey(user_id=user.id, name=data.name, key_prefix=key[:7], key_hash=digest(key), expires_at=expires)
    db.add(row)
    db.flush()
    return key, row


def list_for(db: Session, user_id: int) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)).order_by(ApiKey.id)
    return list(db.scalars(query))


def revoke(db: Session, user_id: int, key_id: int) -> None:
    row = db.get(ApiKey, key_id) if fits_id(key_id) else None
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        raise NotFound(f"API key {key_id} not found")
    row.revoked_at = datetime.now(UTC)


def resolve(db: Session, key: str) -> User | None:
    """The active user owning a valid key, stamping `last_used_at` (at most once a minute, so most requests write
    nothing, and never failing the request for it: a full disk still serves reads); None for anything else."""
    if not looks_like_api_key(key):
        return None
    row = db.scalars(select(ApiKey).where(ApiKey.key_hash == digest(key))).first()
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
        return None
    if not row.user.is_active:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        commit_if_possible(db)
    return row.user
