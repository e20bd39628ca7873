"""Login sessions as signed tokens, so that logging in and using a session write nothing: people still get in
when the disk is full. A token is `<user id>.<epoch>.<expiry>.<nonce>.<mac>`, signed with the server's session key;
raising a user's `session_epoch` ends all their sessions at once (password change, deactivation), and logout
records the token's digest as revoked until it would have expired anyway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from tuneforge.db.engine import commit_if_possible
from tuneforge.db.models import RevokedSession, User, fits_id
from tuneforge.services.secrets import digest

COOKIE_NAME = "tuneforge_session"


def log_in(db: Session, key: bytes, user: User, lifetime: timedelta) -> str:
    """A new session for `user`; the login's bookkeeping pending in `db` is kept if the database can take it."""
    user.last_login_at = now()
    commit_if_possible(db)
    return start(key, user, lifetime)


def start(key: bytes, user: User, lifetime: timedelta) -> str:
    expires = int((now() + lifetime).timestamp())
    payload = f"{user.id}.{user.session_epoch}.{expires}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_mac(key, payload)}"


def resolve(db: Session, key: bytes, token: str) -> User | None:
    """The active user a valid, unexpired, unrevoked token belongs to; None for anything else."""
    claims = _verified_claims(key, token)
    if claims is None:
        return None
    user_id, epoch, expires = claims
    user = db.get(User, user_id) if fits_id(user_id) else None
    if user is None or not user.is_active or user.session_epoch != epoch or expires <= now().timestamp():
        return None
    return None if db.get(RevokedSession, digest(token)) is not None else user


def end(db: Session, key: bytes, token: str) -> None:
    """Revoke one token; revocations of tokens that have expired since are dropped."""
    claims = _verified_claims(key, token)
    if claims is None:
        return
    db.execute(delete(RevokedSession).where(RevokedSession.expires_at <= now()))
    user_id, _, expires = claims
    db.merge(RevokedSession(token_hash=digest(token), user_id=user_id,
                            expires_at=datetime.fromtimestamp(expires, UTC), revoked_at=now()))


def revoke_all(user: User) -> None:
    user.session_epoch += 1


def now() -> datetime:
    return datetime.now(UTC)


def _verified_claims(key: bytes, token: str) -> tuple[int, int, int] | None:
    payload, _, mac = token.rpartition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        return None
    try:
        user_id, epoch, expires, _nonce = payload.split(".")
        return int(user_id), int(epoch), int(expires)
    except ValueError:
        return None


def _mac(key: bytes, payload: str) -> str:
    signature = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
