"""Naming the programs a job runs is a right of its own (`hooks.set`, leads and admins by default)."""

from __future__ import annotations

from typing import Any

from tuneforge.errors import FieldError, Forbidden
from tuneforge.options import names
from tuneforge.options.hooks import HOOK_OPTIONS
from tuneforge.services.permissions import Permission
from tuneforge.services.principal import Principal


def ensure_may_set_hooks(principal: Principal, given: dict[str, Any], stored: dict[str, Any] | None = None) -> None:
    """403 when `given` sets a hook option to a new program and the caller lacks `hooks.set`. A hook an
    environment already has (set by someone allowed to) may be kept, and anyone may clear one."""
    if principal.can(Permission.HOOKS_SET):
        return
    before = {names.canonical_name(k): v for k, v in (stored or {}).items()}
    changed = [name for key, value in given.items() if (name := names.canonical_name(key)) in HOOK_OPTIONS
               and value not in (None, "") and value != before.get(name)]
    if changed:
        message = f"Not allowed: setting {', '.join(names.cli(n) for n in changed)} needs the 'hooks.set' permission"
        raise Forbidden(message, [FieldError(names.cli(name), "needs the 'hooks.set' permission") for name in changed])
