"""Request and response bodies for users and authentication (separate create/update/public shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Level = Literal["viewer", "researcher", "lead", "admin"]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,50}$")]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(_Request):
    email: Email
    username: Username
    password: Password
    level_names: list[Level] = Field(default_factory=lambda: ["viewer"], min_length=1, max_length=4)


class UserRegister(_Request):
    email: Email
    username: Username
    password: Password


class FirstAdminCreate(_Request):
    email: Email
    username: Username
    password: Password
    setup_token: str | None = Field(None, max_length=200)


class UserUpdate(_Request):
    email: Email | None = None
    password: Password | None = None
    level_names: list[Level] | None = Field(None, min_length=1, max_length=4)
    is_active: bool | None = None


class PasswordChange(_Request):
    current_password: str = Field(max_length=256)
    new_password: Password


class UserPublic(BaseModel):
    id: int
    username: str
    email: str
    level_names: list[str]
    permissions: list[str]
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserEnvelope(BaseModel):
    user: UserPublic


class UserList(BaseModel):
    users: list[UserPublic]
    count: int


class LoginRequest(_Request):
    username: str | None = Field(None, max_length=254, description="Username or email.")
    email: str | None = Field(None, max_length=254)
    password: str = Field(max_length=256)
    remember_me: bool = False


class SetupStatus(BaseModel):
    needs_setup: bool
    has_admin: bool
    user_count: int
    registration_enabled: bool


class RegistrationSettings(BaseModel):
    enabled: bool


class ApiKeyCreate(_Request):
    name: str = Field(min_length=1, max_length=100)
    expires_days: int | None = Field(None, ge=1, le=3650)


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    key_prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(BaseModel):
    key: str = Field(description="The full key. Shown once; only a hash is stored.")
    key_info: ApiKeyPublic


class ApiKeyList(BaseModel):
    keys: list[ApiKeyPublic]
    count: int


class Message(BaseModel):
    message: str
