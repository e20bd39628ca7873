"""Settings: the one place that reads the process environment.

The server builds one `Settings` at start-up and passes it down; client commands build one
`ClientSettings`. Nothing else in tuneforge looks at `os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings (env prefix `TUNEFORGE_`; host/port also accept `SIMPLETUNER_*`)."""

    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", extra="ignore", populate_by_name=True)

    host: str = Field("0.0.0.0", validation_alias=AliasChoices("TUNEFORGE_HOST", "SIMPLETUNER_HOST"))
    port: int = Field(8001, ge=1, le=65535, validation_alias=AliasChoices("TUNEFORGE_PORT", "SIMPLETUNER_PORT"))
    workspace: Path = Field(default_factory=Path.cwd, validation_alias=AliasChoices("TUNEFORGE_HOME"))
    database_url: str | None = None
    datasets_dir: Path | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)  # "10.0.0.1,10.0.0.0/8"
    session_hours: int = Field(24 * 14, ge=1)
    login_max_failures_per_account: int = Field(5, ge=1)
    login_max_failures_per_client: int = Field(20, ge=1)
    login_window_seconds: int = Field(15 * 60, ge=1)
    max_upload_bytes: int = Field(20 * 1024**3, ge=1)
    max_body_bytes: int = Field(2 * 1024**2, ge=1024)  # every request body but uploads
    # Zip uploads are checked against these before anything is extracted.
    zip_max_entries: int = Field(100_000, ge=1)
    zip_max_uncompressed_bytes: int = Field(100 * 1024**3, ge=1)
    zip_max_ratio: int = Field(200, ge=1)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"  # uvicorn's levels
    # What jobs may touch (see services/job_policy.py): folders, separated by ":" like PATH; default the workspace
    # (and the datasets root, for reading).
    read_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    write_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    hooks_dir: Path | None = None  # the only place hook programs may come from; unset: no hooks run
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)  # CIDRs, comma separated

    @field_validator("workspace", "datasets_dir", "hooks_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("read_roots", "write_roots", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("read_roots", "write_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser().resolve() for path in value]

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value  # INFO as well as info

    @field_validator("trusted_proxies", "webhook_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", "webhook_allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @property
    def state_dir(self) -> Path:
        return self.workspace / ".tuneforge"

    @property
    def config_dir(self) -> Path:
        return self.workspace / "config"

    @property
    def output_dir(self) -> Path:
        return self.workspace / "output"

    @property
    def datasets_root(self) -> Path:
        return self.datasets_dir or self.workspace / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'state.db'}"

    @cached_property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @cached_property
    def webhook_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.webhook_allowed_networks)

    @property
    def job_read_roots(self) -> tuple[Path, ...]:
        datasets = self.datasets_root.resolve()
        return tuple(self.read_roots) or ((self.workspace,) if datasets.is_relative_to(self.workspace)
                                          else (self.workspace, datasets))

    @property
    def job_write_roots(self) -> tuple[Path, ...]:
        return tuple(self.write_roots) or (self.workspace,)


DEFAULT_SERVER_URL = "http://localhost:8001"


class ClientSettings(BaseSettings):
    """Settings of the client commands (`tuneforge auth`, `datasets upload`, ...)."""

    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", extra="ignore")

    url: str | None = None
    api_key: str | None = None
    client_config: Path = Field(
        default_factory=lambda: Path(os.path.expanduser("~/.config/tuneforge/client.json"))
    )
