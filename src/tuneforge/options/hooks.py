"""Which program a hook command runs, and whether the server lets it: one rule for validation and the trainer.

A hook (`validation_external_script`, `post_checkpoint_script`) is an argument list, never a shell line; its first
word is the program. On the server only executables inside the admin's hooks folder (`TUNEFORGE_HOOKS_DIR`) run,
named by their path or by their name in that folder; without the folder no hook runs at all.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

RUNNABLE_HOOKS = ("validation_external_script", "post_checkpoint_script")
HOOK_OPTIONS = (*RUNNABLE_HOOKS, "post_upload_script")  # post_upload_script is refused: tuneforge uploads nothing


def program_of(command: str) -> str:
    """The first word of a hook command (raises ValueError for unbalanced quotes)."""
    words = shlex.split(command)
    if not words:
        raise ValueError("the command is empty")
    return words[0]


def hook_problem(command: str, hooks_dir: Path | None) -> str | None:
    """Why the server will not run `command`, or None. `hooks_dir=None`: hooks are off."""
    try:
        program = program_of(command)
    except ValueError as exc:
        return f"{command!r} cannot be read as a command: {exc}"
    if hooks_dir is None:
        return ("hooks are off on this server: an admin enables them by putting the programs into a folder and "
                "setting TUNEFORGE_HOOKS_DIR to it")
    path = resolve_program(program, hooks_dir)
    if not path.is_relative_to(hooks_dir):
        return f"{program} is not in the hooks folder {hooks_dir}; only programs an admin put there may run"
    if not path.is_file() or not os.access(path, os.X_OK):
        return f"{path} is not an executable file in the hooks folder; an admin puts hook programs there"
    return None


def resolve_program(program: str, hooks_dir: Path) -> Path:
    """A program named by its path, or by its name in the hooks folder; links resolved."""
    path = Path(program).expanduser()
    return (path if path.is_absolute() else hooks_dir / path).resolve()
