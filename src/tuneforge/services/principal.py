"""Who is calling: a user (by session or API key) or the local bootstrap admin."""

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

    @property
    def is_local_bootstrap(self) -> bool:
        return self.method == "local-bootstrap"
