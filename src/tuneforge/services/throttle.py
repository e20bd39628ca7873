"""Login throttling: failed attempts counted per account and per client address in a sliding window.

Failures live in the database; one it cannot take (a full disk) is counted in this process instead, so a full disk
never lifts the limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tuneforge.db.engine import commit_if_possible
from tuneforge.db.models import LoginFailure
from tuneforge.errors import RateLimited

_MAX_UNSAVED_SCOPES = 10_000
_unsaved: dict[str, list[datetime]] = {}


def check(db: Session, limits: dict[str, int], window: timedelta) -> None:
    """Raise RateLimited if any scope already has `limit` failures inside the window."""
    since = datetime.now(UTC) - window
    for scope, limit in limits.items():
        query = select(func.count(), func.min(LoginFailure.failed_at)).where(
            LoginFailure.scope == scope, LoginFailure.failed_at > since
        )
        failures, oldest = db.execute(query).one()
        unsaved = [at for at in _unsaved.get(scope, []) if at > since]
        if failures + len(unsaved) >= limit:
            oldest = min([at for at in (oldest, *unsaved) if at is not None])
            retry_after = (oldest + window - datetime.now(UTC)).total_seconds()
            raise RateLimited("Too many failed logins; try again later", retry_after=int(retry_after) + 1)


def record_failure(db: Session, scopes: list[str], window: timedelta) -> None:
    """Count a failed login in each scope (and forget failures older than the window)."""
    now = datetime.now(UTC)
    db.add_all(LoginFailure(scope=scope, failed_at=now) for scope in scopes)
    db.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - window))
    if commit_if_possible(db):
        return
    if len(_unsaved) > _MAX_UNSAVED_SCOPES:
        for scope in [s for s, times in _unsaved.items() if times[-1] <= now - window]:
            del _unsaved[scope]
    for scope in scopes:
        _unsaved.setdefault(scope, []).append(now)


def clear(db: Session, scope: str) -> None:
    """After a successful login; kept by the caller's commit, if the database can take it."""
    db.execute(delete(LoginFailure).where(LoginFailure.scope == scope))
    _unsaved.pop(scope, None)
