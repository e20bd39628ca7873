"""Request dependencies: database session, settings, client address, who is calling, and what they may do.

Every route is authenticated by the app-wide `authenticate` dependency unless its endpoint is marked
`@public`; routes then declare the permission they need with `Requires(Permission.X)`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, WebSocketException, status
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from tuneforge.errors import Forbidden, NotAuthenticated, TuneforgeError
from tuneforge.services import api_keys, sessions, setup
from tuneforge.services.permissions import Permission, permissions_for
from tuneforge.services.principal import LOCAL_ADMIN, Principal
from tuneforge.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
_FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def public(endpoint: F) -> F:
    """Mark an endpoint as reachable without credentials."""
    endpoint.__tuneforge_public__ = True  # type: ignore[attr-defined]
    return endpoint


def get_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


def get_db(conn: HTTPConnection) -> Iterator[Session]:
    with conn.app.state.session_factory() as db:
        yield db


def get_session_key(conn: HTTPConnection) -> bytes:
    return conn.app.state.session_key


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionKey = Annotated[bytes, Depends(get_session_key)]
DbSession = Annotated[Session, Depends(get_db)]


def client_address(conn: HTTPConnection, settings: SettingsDep) -> str:
    """The caller's address; `X-Forwarded-For` counts only when the peer is a configured proxy."""
    peer = conn.client.host if conn.client else ""
    if not _is_trusted_proxy(peer, settings):
        return peer
    hops = [hop.strip() for hop in conn.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted_proxy(hop, settings):
            return hop
    return peer


ClientAddress = Annotated[str, Depends(client_address)]


def _is_trusted_proxy(address: str, settings: Settings) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.trusted_proxy_networks)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_local_request(conn: HTTPConnection, address: ClientAddress, settings: SettingsDep) -> bool:
    """A request made on this machine, not relayed: loopback peer and loopback Host, no proxy headers
    unless from a trusted proxy. A reverse proxy on the same host therefore never counts as local."""
    peer = conn.client.host if conn.client else ""
    relayed = any(name in conn.headers for name in _FORWARDING_HEADERS)
    if relayed and not _is_trusted_proxy(peer, settings):
        return False
    host = (conn.url.hostname or "").lower()
    return _is_loopback(address) and host in _LOOPBACK_HOSTS


IsLocal = Annotated[bool, Depends(is_local_request)]


def presented_api_key(conn: HTTPConnection) -> str | None:
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def setup_complete(conn: HTTPConnection, db: Session) -> bool:
    """Setup only ever goes from incomplete to complete, so a True answer is cached."""
    if getattr(conn.app.state, "setup_complete", False):
        return True
    done = setup.has_admin(db)
    conn.app.state.setup_complete = done
    return done


def authenticate(conn: HTTPConnection, db: DbSession, local: IsLocal) -> Principal | None:
    """App-wide: resolve the caller; refuse anonymous callers on every non-public route."""
    endpoint = conn.scope.get("endpoint")
    if getattr(endpoint, "__tuneforge_public__", False):
        return None
    principal = _resolve(conn, db, local)
    if principal is None:
        _refuse(conn, NotAuthenticated("Not authenticated: send an X-API-Key header or log in"))
    return principal


def _refuse(conn: HTTPConnection, error: TuneforgeError) -> None:
    """HTTP errors go through the error handlers; a WebSocket is closed with a policy-violation code."""
    if conn.scope["type"] == "websocket":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=error.detail[:120])
    raise error


def _resolve(conn: HTTPConnection, db: Session, local: bool) -> Principal | None:
    key = presented_api_key(conn)
    if key is not None:
        user = api_keys.resolve(db, key)
        if user is None:
            raise NotAuthenticated("Invalid, revoked or expired API key")
        return Principal(user.id, user.username, permissions_for(user.levels), "api_key")
    token = conn.cookies.get(sessions.COOKIE_NAME)
    if token:
        user = sessions.resolve(db, conn.app.state.session_key, token)
        if user is not None:
            return Principal(user.id, user.username, permissions_for(user.levels), "session")
    if local and not setup_complete(conn, db):
        return LOCAL_ADMIN
    return None


def current_principal(principal: Annotated[Principal | None, Depends(authenticate)]) -> Principal:
    if principal is None:
        raise NotAuthenticated("Not authenticated: send an X-API-Key header or log in")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def Requires(permission: Permission) -> Any:
    """`caller: Annotated[Principal, Requires(Permission.JOB_SUBMIT)]` — 403 unless granted."""

    def check(conn: HTTPConnection, principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            _refuse(conn, Forbidden(f"Not allowed: this needs the '{permission}' permission"))
        return principal

    return Depends(check)
