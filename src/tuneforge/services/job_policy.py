"""What a job may touch and run on this machine: the one rule for every path a config names, and the hooks.

A job reads its base model, datasets, references, resume checkpoint and accelerate file only inside the read roots
(`TUNEFORGE_READ_ROOTS`, default the workspace and the datasets root) or the write roots, and writes its output and
caches only inside the write roots (`TUNEFORGE_WRITE_ROOTS`, default the workspace). Paths are compared after
resolving symbolic links, so a link inside a root that points out of it does not count as inside. The server applies
this to every job; `tuneforge train`, run by a person in a shell, acts as that person (`JobPolicy.unrestricted`).
Nothing a job writes may lie in or around the server's own folders (its state: database, secrets, run folders; and
the environments' configs, which hold webhook tokens): a job's output is served to everyone who may view jobs.
Hook programs run only from the admin's hooks folder (`options.hooks`); webhooks go only where `services.outbound`
allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneforge.errors import FieldError
from tuneforge.options.hooks import hook_problem
from tuneforge.services.outbound import OutboundPolicy
from tuneforge.settings import Settings

Access = Literal["read", "write"]


@dataclass(frozen=True)
class JobPolicy:
    read_roots: tuple[Path, ...]
    write_roots: tuple[Path, ...]
    hooks_dir: Path | None = None
    outbound: OutboundPolicy = OutboundPolicy()
    confined: bool = True
    protected: tuple[Path, ...] = ()  # the server's own folders

    @classmethod
    def from_settings(cls, settings: Settings) -> JobPolicy:
        protected = tuple(Path(folder).resolve() for folder in (settings.state_dir, settings.config_dir))
        return cls(settings.job_read_roots, settings.job_write_roots, settings.hooks_dir,
                   OutboundPolicy.from_settings(settings), protected=protected)

    @classmethod
    def unrestricted(cls) -> JobPolicy:
        return cls((), (), confined=False)

    def hook_problem(self, command: str, field: str) -> FieldError | None:
        problem = hook_problem(command, self.hooks_dir) if self.confined else None
        return FieldError(field, problem) if problem else None

    def webhook_problem(self, url: str, field: str) -> FieldError | None:
        problem = self.outbound.url_problem(url) if self.confined else None
        return FieldError(field, problem) if problem else None

    def server_folder_near(self, path: Path) -> Path | None:
        """The server's own folder that `path` is, lies in or holds, if any."""
        resolved = Path(path).resolve()
        return next((folder for folder in self.protected
                     if resolved.is_relative_to(folder) or folder.is_relative_to(resolved)), None)

    def allows(self, path: Path, access: Access) -> bool:
        if not self.confined:
            return True
        if access == "write" and self.server_folder_near(path) is not None:
            return False
        roots = self.write_roots if access == "write" else (*self.read_roots, *self.write_roots)
        resolved = Path(path).resolve()
        return any(resolved.is_relative_to(root) for root in roots)

    def problem(self, path: Path, field: str, access: Access) -> FieldError | None:
        """A 422 naming the field, the path and the roots, or None. Says nothing of whether the path exists."""
        if self.allows(path, access):
            return None
        if access == "write" and (folder := self.server_folder_near(path)) is not None:
            return FieldError(field, f"{path} is in or around the server's own folder {folder}; a job writes into a "
                                     "folder of its own, e.g. output/<name> in the workspace")
        roots = self.write_roots if access == "write" else (*self.read_roots, *self.write_roots)
        listed = ", ".join(str(root) for root in dict.fromkeys(roots))
        setting = "TUNEFORGE_WRITE_ROOTS" if access == "write" else "TUNEFORGE_READ_ROOTS"
        return FieldError(field, f"{path} is outside the folders jobs may {access} ({listed}); use a path inside "
                                 f"them, or ask an admin to add its folder to {setting}")
