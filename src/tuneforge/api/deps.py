"""Request dependencies: database session, settings, client address, who is calling, and what they may do.

Every route is authenticated by the app-wide `authenticate` dependency unless its endpoint is marked
`@public`; routes then declare the permission they need with `Requires(Permission.X)`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, WebSocketException, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from tuneforge.errors import Forbidden, NotAuthenticated, TuneforgeError
from tuneforge.services import api_keys, sessions, setup
from tuneforge.services.notify import Scheduling
from tuneforge.services.permissions import Permission, permissions_for
from tuneforge.services.principal import LOCAL_ADMIN, Principal
from tuneforge.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
_FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


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


def get_scheduler(conn: HTTPConnection) -> Scheduling:
    return conn.app.state.scheduler


def get_session_factory(conn: HTTPConnection) -> sessionmaker[Session]:
    """For work that runs in a thread of its own (it opens its own session there)."""
    return conn.app.state.session_factory


SettingsDep = Annotated[Settings, Depends(get_settings)]
SchedulerDep = Annotated[Scheduling, Depends(get_scheduler)]
SessionFactory = Annotated[sessionmaker[Session], Depends(get_session_factory)]
SessionKey = Annotated[bytes, Depends(get_session_key)]
DbSession = Annotated[Session, Depends(get_db)]


def client_address(conn: HTTPConnection, settings: SettingsDep) -> str:
    """The caller's address, decided here only: the peer, or, when the peer is a trusted proxy
    (`TUNEFORGE_TRUSTED_PROXIES`), the nearest untrusted hop of `X-Forwarded-For`. No other header counts, and
    uvicorn's own proxy-header handling is off (`cli/server.py`)."""
    peer = _peer(conn)
    if not _is_trusted_proxy(peer, settings):
        return peer
    hops = _forwarded_for(conn)
    for hop in reversed(hops):
        if not _is_trusted_proxy(hop, settings):
            return hop
    return hops[0] if hops else peer


ClientAddress = Annotated[str, Depends(client_address)]


def request_scheme(conn: HTTPConnection, settings: Settings) -> str:
    """`https` also behind a trusted proxy that terminated TLS and said so with `X-Forwarded-Proto`."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https") and _is_trusted_proxy(_peer(conn), settings):
        return forwarded
    return conn.url.scheme


def _peer(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


def _forwarded_for(conn: HTTPConnection) -> list[str]:
    return [hop.strip() for hop in conn.headers.get("x-forwarded-for", "").split(",") if hop.strip()]


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
    """Made on this machine: the client address is loopback, and so is the Host. A request relayed by a trusted
    proxy counts by the address it forwarded (a proxy that forwards none hides its client: not local); one that
    carries forwarding headers from any other peer was relayed by a proxy we do not know: not local."""
    peer = _peer(conn)
    if _is_trusted_proxy(peer, settings):
        if not _forwarded_for(conn):
            return False
    elif any(name in conn.headers for name in _FORWARDING_HEADERS):
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


def authenticate(conn: HTTPConnection, db: DbSession, local: IsLocal, settings: SettingsDep) -> Principal | None:
    """App-wide: resolve the caller; refuse anonymous callers on every non-public route, and changes that ride on
    ambient credentials from another site's page."""
    endpoint = conn.scope.get("endpoint")
    if getattr(endpoint, "__tuneforge_public__", False):
        return None
    principal = _resolve(conn, db, local)
    if principal is None:
        _refuse(conn, NotAuthenticated("Not authenticated: send an X-API-Key header or log in"))
    if principal.method != "api_key" and not _same_origin_or_safe(conn, settings):
        _refuse(conn, Forbidden("Cross-origin request refused: a browser session (or this machine before setup) may "
                                "only change things from this server's own pages; scripts send an API key"))
    return principal


def _same_origin_or_safe(conn: HTTPConnection, settings: Settings) -> bool:
    """A browser sends cookies (and reaches loopback) from any page: an unsafe request or a WebSocket with such
    ambient credentials needs an `Origin` of this server, or none (scripts send none) and no sign of another site."""
    if conn.scope["type"] == "http" and conn.scope["method"] in _SAFE_METHODS:
        return True
    origin = conn.headers.get("origin")
    if origin is None:
        return conn.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc.lower() == _own_host(conn, settings) and origin.lower() != "null"


def _own_host(conn: HTTPConnection, settings: Settings) -> str:
    forwarded = conn.headers.get("x-forwarded-host", "").split(",")[0].strip()
    if forwarded and _is_trusted_proxy(_peer(conn), settings):
        return forwarded.lower()
    return conn.headers.get("host", "").lower()


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
