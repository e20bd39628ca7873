"""Server-side login sessions: the cookie holds a random token, the database its digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tuneforge.db.models import AuthSession, User
from tuneforge.services.secrets import digest, new_token

COOKIE_NAME = "tuneforge_session"


def start(db: Session, user: User, lifetime: timedelta) -> str:
    token = new_token()
    db.add(AuthSession(token_hash=digest(token), user_id=user.id, expires_at=datetime.now(UTC) + lifetime))
    db.flush()
    return token


def resolve(db: Session, token: str) -> User | None:
    now = datetime.now(UTC)
    query = (
        select(AuthSession)
        .where(AuthSession.token_hash == digest(token))
        .where(AuthSession.revoked_at.is_(None))
    )
    session = db.scalars(query).first()
    if session is None or session.expires_at <= now or not session.user.is_active:
        return None
    return session.user


def end(db: Session, token: str) -> None:
    db.execute(
        update(AuthSession)
        .where(AuthSession.token_hash == digest(token))
        .values(revoked_at=datetime.now(UTC))
    )


def revoke_all(db: Session, user_id: int) -> None:
    db.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


def now() -> datetime:
    return datetime.now(UTC)
