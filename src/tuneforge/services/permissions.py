"""Access levels and the permissions each one grants."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Permission(StrEnum):
    CONFIG_VIEW = "config.view"
    CONFIG_EDIT = "config.edit"
    JOB_VIEW_ALL = "job.view.all"
    JOB_SUBMIT = "job.submit"
    JOB_CANCEL_OWN = "job.cancel.own"
    JOB_CANCEL_ALL = "job.cancel.all"
    DATASET_VIEW = "dataset.view"
    DATASET_UPLOAD = "dataset.upload"
    QUEUE_MANAGE = "queue.manage"
    HOOKS_SET = "hooks.set"  # name the programs a job runs (validation_external_script, post_checkpoint_script)
    SYSTEM_VIEW = "system.view"
    ADMIN_USERS = "admin.users"
    ADMIN_SETTINGS = "admin.settings"


_VIEWER = frozenset(
    {Permission.CONFIG_VIEW, Permission.JOB_VIEW_ALL, Permission.DATASET_VIEW, Permission.SYSTEM_VIEW}
)
_RESEARCHER = _VIEWER | {
    Permission.CONFIG_EDIT,
    Permission.JOB_SUBMIT,
    Permission.JOB_CANCEL_OWN,
    Permission.DATASET_UPLOAD,
}
_LEAD = _RESEARCHER | {Permission.JOB_CANCEL_ALL, Permission.QUEUE_MANAGE, Permission.HOOKS_SET}
_ADMIN = frozenset(Permission)

LEVELS: dict[str, frozenset[Permission]] = {
    "viewer": _VIEWER,
    "researcher": _RESEARCHER,
    "lead": _LEAD,
    "admin": _ADMIN,
}


def permissions_for(levels: Iterable[str]) -> frozenset[Permission]:
    granted: frozenset[Permission] = frozenset()
    for level in levels:
        granted |= LEVELS.get(level, frozenset())
    return granted
