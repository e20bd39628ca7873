"""The workspace folder: config/, datasets/, output/ and the server's private .tuneforge/."""

from __future__ import annotations

import os

from tuneforge.settings import Settings


def prepare(settings: Settings) -> None:
    for folder in (settings.config_dir, settings.datasets_root, settings.output_dir):
        folder.mkdir(parents=True, exist_ok=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
