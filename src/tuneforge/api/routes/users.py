"""User management (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from tuneforge.api.deps import DbSession, Requires
from tuneforge.api.errors import responses
from tuneforge.schemas.users import Message, UserCreate, UserEnvelope, UserList, UserUpdate
from tuneforge.services import users
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal

router = APIRouter(prefix="/api/users", tags=["users"])

AdminUsers = Annotated[Principal, Requires(Permission.ADMIN_USERS)]


@router.post("", status_code=201, response_model=UserEnvelope, responses=responses(409))
def create_user(data: UserCreate, db: DbSession, _: AdminUsers) -> UserEnvelope:
    user = users.create(db, data)
    db.commit()
    return UserEnvelope(user=users.to_public(user))


@router.get("", response_model=UserList)
def list_users(db: DbSession, _: AdminUsers) -> UserList:
    found = [users.to_public(u) for u in users.list_all(db)]
    return UserList(users=found, count=len(found))


@router.get("/{user_id}", response_model=UserEnvelope, responses=responses(404))
def get_user(user_id: int, db: DbSession, _: AdminUsers) -> UserEnvelope:
    return UserEnvelope(user=users.to_public(users.get(db, user_id)))


@router.patch("/{user_id}", response_model=UserEnvelope, responses=responses(404, 409))
def update_user(user_id: int, data: UserUpdate, db: DbSession, _: AdminUsers) -> UserEnvelope:
    user = users.update(db, users.get(db, user_id), data)
    db.commit()
    return UserEnvelope(user=users.to_public(user))


@router.delete("/{user_id}", response_model=Message, responses=responses(404, 409))
def delete_user(user_id: int, db: DbSession, _: AdminUsers) -> Message:
    users.delete(db, users.get(db, user_id))
    db.commit()
    return Message(message=f"User {user_id} deleted")
