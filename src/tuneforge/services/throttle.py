"""Login throttling: failed attempts counted per account and per client address in a sliding window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tuneforge.db.models import LoginFailure
from tuneforge.errors import RateLimited


def check(db: Session, limits: dict[str, int], window: timedelta) -> None:
    """Raise RateLimited if any scope already has `limit` failures inside the window."""
    since = datetime.now(UTC) - window
    for scope, limit in limits.items():
        query = select(func.count(), func.min(LoginFailure.failed_at)).where(
            LoginFailure.scope == scope, LoginFailure.failed_at > since
        )
        failures, oldest = db.execute(query).one()
        if failures >= limit:
            retry_after = (oldest + window - datetime.now(UTC)).total_seconds()
            raise RateLimited("Too many failed logins; try again later", retry_after=int(retry_after) + 1)


def record_failure(db: Session, scopes: list[str]) -> None:
    now = datetime.now(UTC)
    db.add_all(LoginFailure(scope=scope, failed_at=now) for scope in scopes)


def clear(db: Session, scope: str) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.scope == scope))


def prune(db: Session, window: timedelta) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.failed_at <= datetime.now(UTC) - window))
