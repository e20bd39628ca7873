"""The per-file report every upload returns: what was written where, what was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.services.datasets.paths import display

WRITTEN = "written"  # stored under the name it was sent with
RENAMED = "renamed"  # that name was taken by a different file: stored as `name (1).ext`
SKIPPED = "skipped"  # not stored; `reason` says why
UNCHANGED = "unchanged"  # an identical file is already there: nothing to do, not an error


@dataclass
class FileResult:
    name: str
    status: str
    reason: str | None = None
    path: str | None = None
    size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "path": self.path,
                "size": self.size}


@dataclass
class UploadReport:
    root: Path
    target: Path | None = None
    results: list[FileResult] = field(default_factory=list)

    def placed(self, name: str, status: str, path: Path, size: int) -> None:
        """A file stored (WRITTEN, RENAMED) or found already there (UNCHANGED: nothing written, size 0)."""
        reason = {RENAMED: f"a different file named '{name}' already exists",
                  UNCHANGED: "an identical file already exists"}.get(status)
        written = 0 if status == UNCHANGED else size
        self.results.append(FileResult(name, status, reason, display(path, self.root), written))

    def skipped(self, name: str, reason: str) -> None:
        self.results.append(FileResult(name, SKIPPED, reason))

    def as_dict(self) -> dict[str, Any]:
        skipped = [r for r in self.results if r.status == SKIPPED]
        unchanged = sum(r.status == UNCHANGED for r in self.results)
        return {
            "success": True,
            "files_uploaded": len(self.results) - len(skipped) - unchanged,
            "files_unchanged": unchanged,
            "files_skipped": len(skipped),
            "errors": [f"{r.name}: {r.reason}" for r in skipped],
            "target_path": str(self.target) if self.target else None,
            "files": [r.as_dict() for r in self.results],
        }
