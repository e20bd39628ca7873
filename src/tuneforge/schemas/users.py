"""Request and response bodies for users and authentication (separate create/update/public shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tuneforge.schemas.types import BLANK, WHOLE_NUMBER

Level = Literal["viewer", "researcher", "lead", "admin"]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,50}$")]
Email = Annotated[str, StringConstraints(max_length=254, pattern=rf"^[^@{BLANK}]{{1,64}}@[^@{BLANK}]+\.[^@{BLANK}]+$")]
# The most common passwords of at least 8 characters; refusing them stops the cheapest guesses.
COMMON_PASSWORDS = frozenset(
    """password 12345678 123456789 1234567890 qwertyuiop password1 password123 iloveyou1 11111111
    00000000 abcd1234 qwerty123 1q2w3e4r 1qaz2wsx sunshine princess football baseball welcome1
    superman trustno1 letmein1 passw0rd changeme administrator admin123 adminadmin 87654321
    qwertyui asdfghjk zaq12wsx 123123123 987654321 monkey123 dragon123 master123 whatever
    starwars computer michelle jennifer 1234qwer q1w2e3r4 secret123""".split()
)
Password = Annotated[str, StringConstraints(min_length=8, max_length=256),
                     Field(description="8 to 256 characters, not one of the most common passwords (in any case)",
                           json_schema_extra={"not": {"enum": sorted(COMMON_PASSWORDS)}})]


class _Request(BaseModel):
    """Request bodies: unknown fields refused, and no coercion (`0` is not `false`, `"1"` not `1`)."""

    model_config = ConfigDict(extra="forbid", strict=True)


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
    """`username` (or an email in it) or `email`: the first that is not blank names the account."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"anyOf": [
        {"required": ["username"], "properties": {"username": {"type": "string", "pattern": f"[^{BLANK}]"}}},
        {"required": ["email"], "properties": {"email": {"type": "string", "pattern": f"[^{BLANK}]"}}}]})

    username: str | None = Field(None, max_length=254, description="Username or email.")
    email: str | None = Field(None, max_length=254)
    password: str = Field(max_length=256)
    remember_me: bool = False

    @property
    def login_name(self) -> str:
        return next((name.strip().lower() for name in (self.username, self.email) if name and name.strip()), "")

    @model_validator(mode="after")
    def _names_an_account(self) -> LoginRequest:
        if not self.login_name:
            raise ValueError("send 'username' (or 'email') and 'password'")
        return self


class SetupStatus(BaseModel):
    needs_setup: bool
    has_admin: bool
    user_count: int
    registration_enabled: bool


class RegistrationSettings(_Request):
    enabled: bool


class ApiKeyCreate(_Request):
    name: str = Field(min_length=1, max_length=100)
    expires_days: Annotated[int, Field(ge=1, le=3650), WHOLE_NUMBER] | None = None


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
