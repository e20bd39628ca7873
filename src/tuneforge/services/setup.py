"""First-run setup: the one-time setup token, the first admin (exactly once) and public registration."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuneforge.db.models import AppState, User
from tuneforge.errors import Conflict
from tuneforge.schemas.users import FirstAdminCreate, SetupStatus, UserCreate
from tuneforge.services import users
from tuneforge.services.secrets import new_token, same

SETUP_DONE = "setup_complete"
REGISTRATION = "registration_enabled"
SETUP_TOKEN_FILE = "setup_token"


def has_admin(db: Session) -> bool:
    return db.get(AppState, SETUP_DONE) is not None


def registration_enabled(db: Session) -> bool:
    row = db.get(AppState, REGISTRATION)
    return bool(row and row.value)


def set_registration(db: Session, enabled: bool) -> None:
    row = db.get(AppState, REGISTRATION)
    if row is None:
        db.add(AppState(key=REGISTRATION, value=enabled))
    else:
        row.value = enabled


def status(db: Session) -> SetupStatus:
    admin = has_admin(db)
    return SetupStatus(
        needs_setup=not admin,
        has_admin=admin,
        user_count=users.count(db),
        registration_enabled=registration_enabled(db),
    )


def create_first_admin(db: Session, data: FirstAdminCreate) -> User:
    """Create the first admin. The setup marker's primary key makes concurrent calls create exactly one."""
    if has_admin(db):
        raise Conflict("Setup is already complete: an admin exists")
    user = users.create(
        db, UserCreate(email=data.email, username=data.username, password=data.password, level_names=["admin"])
    )
    db.add(AppState(key=SETUP_DONE, value={"user_id": user.id}))
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise Conflict("Setup is already complete: an admin exists") from exc
    return user


def ensure_setup_token(state_dir: Path) -> str:
    """Read or create the one-time token that lets a remote client create the first admin."""
    path = state_dir / SETUP_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def setup_token_matches(state_dir: Path, offered: str | None) -> bool:
    path = state_dir / SETUP_TOKEN_FILE
    return bool(offered) and path.exists() and same(path.read_text().strip(), offered or "")


def discard_setup_token(state_dir: Path) -> None:
    (state_dir / SETUP_TOKEN_FILE).unlink(missing_ok=True)

