"""Who is calling: a user (by session or API key) or the machine's own local admin."""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.services.permissions import Permission


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    username: str
    permissions: frozenset[Permission]
    method: str  # "session", "api_key" or "local-bootstrap"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


# All permissions, no account: requests made on this machine before the first admin exists, and the job that
# `tuneforge server --env` starts (whoever may start the server may train on it).
LOCAL_ADMIN = Principal(user_id=None, username="local-admin", permissions=frozenset(Permission),
                        method="local-bootstrap")
