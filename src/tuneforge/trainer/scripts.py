"""User hooks (external validation, post-checkpoint): argument lists with {placeholders}, never a shell.

The command is split like a shell would split it (quotes respected), then each argument has its placeholders
replaced, so a value with spaces stays one argument and nothing is ever interpreted by a shell. A failing or
missing command is reported as a warning event; it never fails the training.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time
from typing import Any

from tuneforge.options.hooks import hook_problem, resolve_program

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_background: list[threading.Thread] = []  # waiters of background hooks; the run waits for them before it ends


def context_for(options: Any, step: int, checkpoint_path: str = "", remote_path: str = "") -> dict[str, str]:
    values = {
        "local_checkpoint_path": checkpoint_path,
        "remote_checkpoint_path": remote_path,
        "global_step": str(step),
        "tracker_run_name": options.tracker_run_name or "",
        "tracker_project_name": options.tracker_project_name or "",
        "model_family": options.model_family,
        "model_type": options.model_type,
        "lora_type": options.lora_type,
        "huggingface_path": options.hub_model_id or "",
    }
    for name, value in options.model_dump().items():
        if name.startswith("validation_") and name not in values:
            values[name] = "" if value is None else str(value)
    return values


def render(command: str, context: dict[str, str]) -> list[str]:
    """Split, then substitute. Unknown placeholders are an error (they are most likely typos)."""
    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in context:
            raise KeyError(f"unknown placeholder {{{match.group(1)}}}; known: {', '.join(sorted(context))}")
        return context[match.group(1)]

    return [_PLACEHOLDER.sub(replace, part) for part in shlex.split(command)]


def run_hook(name: str, command: str, context: dict[str, str], background: bool, report,
             spec: Any) -> threading.Thread | None:
    """Run `command`; `report(severity, message, data)` receives the outcome. Returns the waiter thread if any.

    A server job (`spec.hooks_confined`) runs only programs of its hooks folder, as validation checked; checked again
    here, so a spec written by other means cannot run anything else."""
    refusal = hook_problem(command, spec.hooks_dir) if spec.hooks_confined else None
    if refusal:
        report("warning", f"{name}: not run: {refusal}", {"hook": name})
        return None
    try:
        args = render(command, context)
        if spec.hooks_confined:
            args[0] = str(resolve_program(args[0], spec.hooks_dir))
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except (OSError, KeyError, ValueError) as exc:
        report("warning", f"{name}: could not start {command!r}: {exc}", {"hook": name})
        return None

    def wait() -> None:
        output, _ = process.communicate()
        tail = output.decode("utf-8", "replace")[-2000:]
        if process.returncode == 0:
            report("info", f"{name} finished", {"hook": name, "args": args, "output_tail": tail})
        else:
            report("warning", f"{name} exited with code {process.returncode}",
                   {"hook": name, "args": args, "returncode": process.returncode, "output_tail": tail})

    if not background:
        wait()
        return None
    thread = threading.Thread(target=wait, name=f"hook-{name}", daemon=True)
    thread.start()
    _background.append(thread)
    return thread


def wait_for_hooks(timeout: float) -> list[str]:
    """Wait up to `timeout` seconds for background hooks (their outcome is lost, and the hook itself may die on a
    closed pipe, if the trainer exits first); returns the names of those still running."""
    deadline = time.monotonic() + timeout
    for thread in list(_background):
        thread.join(max(0.0, deadline - time.monotonic()))
    _background[:] = [thread for thread in _background if thread.is_alive()]
    return [thread.name.removeprefix("hook-") for thread in _background]
