"""The run-folder contract: `spec.json`, written by the server and read (only) by the trainer.

Every path in it is absolute and has been checked, so the trainer never resolves a path against a working
directory or an environment that may have changed since the job was queued.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from tuneforge.errors import FieldError
from tuneforge.options.dataloader import DatasetConfig, cross_check
from tuneforge.options.lycoris import LycorisConfig
from tuneforge.options.registry import TrainingOptions
from tuneforge.options.rules import check_rules


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    job_id: str | None = None
    workspace: Path
    config: TrainingOptions
    datasets: list[DatasetConfig]
    lycoris: LycorisConfig | None = None  # the --lycoris_config file completed by the run's options, frozen at submit
    environment: str | None = None  # the environment it came from, if any (informational)
    # Hook programs run only from this folder (None: no hooks), unless the run is not confined (`tuneforge train`).
    hooks_dir: Path | None = None
    hooks_confined: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        """A spec that breaks a registry rule is refused here too, so a hand-edited file cannot slip through."""
        errors, _ = check_rules(self.config)
        errors += cross_check(self.datasets)
        lycoris_run = self.config.model_type == "lora" and self.config.lora_type == "lycoris"
        lycoris = self.lycoris
        if lycoris_run and (lycoris is None or lycoris.linear_dim is None or lycoris.linear_alpha is None):
            errors.append(FieldError("--lycoris_config", "a LyCORIS run needs its settings in the spec, completed by "
                                                         "the run's options (linear_dim and linear_alpha)"))
        if errors:
            raise ValueError("; ".join(f"{e.field}: {e.message}" for e in errors))
        return self

    def write(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the whole new one, never a partial one."""
        write_text_atomic(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """A reader sees the old file or the whole new one: write a temporary file beside it, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
