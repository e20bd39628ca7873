"""User accounts: create, read, update, delete, with the last-admin guard."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneforge.db.models import User, fits_id
from tuneforge.errors import Conflict, FieldError, NotFound
from tuneforge.schemas.users import UserCreate, UserPublic, UserUpdate
from tuneforge.services import sessions
from tuneforge.services.passwords import check_strength, hash_password
from tuneforge.services.permissions import permissions_for


def to_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        email=user.email,
        level_names=list(user.levels),
        permissions=sorted(permissions_for(user.levels)),
        is_active=user.is_active,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def create(db: Session, data: UserCreate) -> User:
    """Add a user in the caller's transaction (flushed, not committed)."""
    check_strength(data.password)
    _ensure_unique(db, data.username, data.email)
    user = User(
        username=data.username,
        email=data.email.lower(),
        password_hash=hash_password(data.password),
        levels=sorted(set(data.level_names)),
        is_active=True,
    )
    db.add(user)
    try:
        db.flush()
    except IntegrityError as exc:  # a concurrent insert won the race
        db.rollback()
        raise Conflict("A user with that username or email already exists") from exc
    return user


def _ensure_unique(db: Session, username: str, email: str, exclude_id: int | None = None) -> None:
    query = select(User).where(
        or_(func.lower(User.username) == username.lower(), func.lower(User.email) == email.lower())
    )
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    clash = db.scalars(query).first()
    if clash is None:
        return
    field = "username" if clash.username.lower() == username.lower() else "email"
    raise Conflict(f"A user with that {field} already exists", [FieldError(field, "already taken")])


def get(db: Session, user_id: int) -> User:
    user = db.get(User, user_id) if fits_id(user_id) else None
    if user is None:
        raise NotFound(f"User {user_id} not found")
    return user


def find_by_login(db: Session, login: str) -> User | None:
    login = login.strip().lower()
    query = select(User).where(or_(func.lower(User.username) == login, func.lower(User.email) == login))
    return db.scalars(query).first()


def list_all(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.id)))


def count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(User)) or 0


def update(db: Session, user: User, data: UserUpdate) -> User:
    if data.email is not None:
        _ensure_unique(db, user.username, data.email, exclude_id=user.id)
        user.email = data.email.lower()
    if data.level_names is not None:
        if "admin" in user.levels and "admin" not in data.level_names:
            _ensure_not_last_admin(db, user)
        user.levels = sorted(set(data.level_names))
    if data.is_active is False and user.is_active:
        _ensure_not_last_admin(db, user)
        user.is_active = False
        sessions.revoke_all(user)
    elif data.is_active:
        user.is_active = True
    if data.password is not None:
        set_password(db, user, data.password)
    db.flush()
    return user


def set_password(db: Session, user: User, password: str) -> None:
    """A new password ends every session of the user."""
    check_strength(password)
    user.password_hash = hash_password(password)
    sessions.revoke_all(user)


def delete(db: Session, user: User) -> None:
    _ensure_not_last_admin(db, user)
    db.delete(user)
    db.flush()


def _ensure_not_last_admin(db: Session, user: User) -> None:
    if "admin" not in user.levels or not user.is_active:
        return
    admins = [u for u in list_all(db) if u.is_active and "admin" in u.levels]
    if len(admins) <= 1:
        raise Conflict("This is the last active admin; make another admin first")
