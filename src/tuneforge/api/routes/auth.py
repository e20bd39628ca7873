"""Authentication: setup, login/logout, me, API keys, registration. Mounted at /api/cloud/auth and /api/auth."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel

from tuneforge.api.deps import (
    ClientAddress,
    CurrentPrincipal,
    DbSession,
    IsLocal,
    Requires,
    SessionKey,
    SettingsDep,
    public,
    request_scheme,
)
from tuneforge.api.errors import responses
from tuneforge.errors import BadRequest, Forbidden, NotAuthenticated
from tuneforge.schemas.users import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    FirstAdminCreate,
    LoginRequest,
    Message,
    PasswordChange,
    RegistrationSettings,
    SetupStatus,
    UserCreate,
    UserEnvelope,
    UserPublic,
    UserRegister,
)
from tuneforge.services import api_keys, sessions, setup, throttle, users
from tuneforge.services.passwords import DUMMY_HASH, verify_password
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal
from tuneforge.settings import Settings

router = APIRouter(tags=["auth"])

AdminUsers = Annotated[Principal, Requires(Permission.ADMIN_USERS)]


class MeResponse(BaseModel):
    user: UserPublic | None
    auth_method: str
    permissions: list[str]


def _set_session_cookie(response: Response, request: Request, settings: Settings, token: str,
                        lifetime: timedelta | None) -> None:
    secure = request_scheme(request, settings) == "https"
    response.set_cookie(
        sessions.COOKIE_NAME,
        token,
        max_age=int(lifetime.total_seconds()) if lifetime else None,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )


@router.get("/setup/status", response_model=SetupStatus)
@public
def setup_status(db: DbSession) -> SetupStatus:
    return setup.status(db)


@router.post("/setup/first-admin", status_code=201, response_model=UserEnvelope, responses=responses(409))
@public
def first_admin(
    data: FirstAdminCreate,
    request: Request,
    response: Response,
    db: DbSession,
    settings: SettingsDep,
    key: SessionKey,
    local: IsLocal,
    x_setup_token: Annotated[str | None, Header(max_length=200)] = None,
) -> UserEnvelope:
    if not setup.has_admin(db) and not local:
        if not setup.setup_token_matches(settings.state_dir, data.setup_token or x_setup_token):
            raise NotAuthenticated(
                "Creating the first admin from another machine needs the setup token printed when the "
                "server started (also in .tuneforge/setup_token): send it as 'setup_token'"
            )
    user = setup.create_first_admin(db, data)
    setup.discard_setup_token(settings.state_dir)
    token = sessions.start(key, user, timedelta(hours=settings.session_hours))
    _set_session_cookie(response, request, settings, token, None)
    return UserEnvelope(user=users.to_public(user))


@router.post("/login", response_model=UserEnvelope,
             responses={**responses(429), 401: {"description": "Wrong username, email or password, or inactive"}})
@public
def login(
    data: LoginRequest,
    request: Request,
    response: Response,
    db: DbSession,
    settings: SettingsDep,
    key: SessionKey,
    address: ClientAddress,
) -> UserEnvelope:
    login_name = data.login_name
    account_scope, client_scope = f"account:{login_name}", f"client:{address}"
    window = timedelta(seconds=settings.login_window_seconds)
    throttle.check(
        db,
        {account_scope: settings.login_max_failures_per_account, client_scope: settings.login_max_failures_per_client},
        window,
    )
    user = users.find_by_login(db, login_name)
    valid = verify_password(user.password_hash if user else DUMMY_HASH, data.password)
    if user is None or not valid or not user.is_active:
        throttle.record_failure(db, [account_scope, client_scope], window)
        raise NotAuthenticated("Invalid username or password")
    throttle.clear(db, account_scope)
    lifetime = timedelta(hours=settings.session_hours) if data.remember_me else timedelta(hours=24)
    token = sessions.log_in(db, key, user, lifetime)
    _set_session_cookie(response, request, settings, token, lifetime if data.remember_me else None)
    return UserEnvelope(user=users.to_public(user))


@router.post("/logout", response_model=Message)
def logout(request: Request, response: Response, db: DbSession, key: SessionKey,
           principal: CurrentPrincipal) -> Message:
    token = request.cookies.get(sessions.COOKIE_NAME)
    if token:
        sessions.end(db, key, token)
        db.commit()
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return Message(message="Logged out")


@router.get("/me", response_model=MeResponse)
def me(db: DbSession, principal: CurrentPrincipal) -> MeResponse:
    user = users.to_public(users.get(db, principal.user_id)) if principal.user_id is not None else None
    return MeResponse(user=user, auth_method=principal.method, permissions=sorted(principal.permissions))


@router.post("/me/password", response_model=Message)
def change_password(data: PasswordChange, response: Response, db: DbSession, principal: CurrentPrincipal) -> Message:
    user = users.get(db, _user_id(principal))
    if not verify_password(user.password_hash, data.current_password):
        raise Forbidden("Current password is wrong")
    users.set_password(db, user, data.new_password)
    db.commit()
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return Message(message="Password changed; all sessions have ended, log in again")


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
def create_api_key(data: ApiKeyCreate, db: DbSession, principal: CurrentPrincipal) -> ApiKeyCreated:
    user = users.get(db, _user_id(principal))
    key, row = api_keys.create(db, user, data)
    db.commit()
    return ApiKeyCreated(key=key, key_info=api_keys.to_public(row))


@router.get("/api-keys", response_model=ApiKeyList)
def list_api_keys(db: DbSession, principal: CurrentPrincipal) -> ApiKeyList:
    keys = [api_keys.to_public(k) for k in api_keys.list_for(db, _user_id(principal))]
    return ApiKeyList(keys=keys, count=len(keys))


@router.delete("/api-keys/{key_id}", response_model=Message, responses=responses(404))
def revoke_api_key(key_id: int, db: DbSession, principal: CurrentPrincipal) -> Message:
    api_keys.revoke(db, _user_id(principal), key_id)
    db.commit()
    return Message(message=f"API key {key_id} revoked")


@router.get("/registration", response_model=RegistrationSettings)
def get_registration(db: DbSession, _: AdminUsers) -> RegistrationSettings:
    return RegistrationSettings(enabled=setup.registration_enabled(db))


@router.put("/registration", response_model=RegistrationSettings)
def put_registration(data: RegistrationSettings, db: DbSession, _: AdminUsers) -> RegistrationSettings:
    setup.set_registration(db, data.enabled)
    db.commit()
    return data


@router.post("/register", status_code=201, response_model=UserEnvelope,
             responses={**responses(409), 403: {"description": "Public registration is off (an admin turns it on)"}})
@public
def register(data: UserRegister, db: DbSession) -> UserEnvelope:
    if not setup.registration_enabled(db):
        raise Forbidden("Public registration is disabled; ask an admin for an account")
    user = users.create(db, UserCreate(**data.model_dump(), level_names=["viewer"]))
    db.commit()
    return UserEnvelope(user=users.to_public(user))


def _user_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise BadRequest("The local bootstrap admin has no account: create the first admin, then log in")
    return principal.user_id
