"""Request bodies of the configuration routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.options.registry import FamilyName


class EnvironmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(max_length=200, description="Folder name: letters, digits, '.', '_', '-'")
    model_family: FamilyName | None = Field(None, description="Required unless `example`")
    model_flavour: str | None = None
    model_type: Literal["full", "lora"] | None = None
    lora_type: Literal["standard", "lycoris"] | None = None
    description: str = Field("", max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    example: str | None = Field(None, max_length=200, description="Start from a shipped example (GET /examples)")


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="Must match the path if given")
    description: str | None = Field(None, max_length=2000)
    tags: list[str] | None = Field(None, max_length=50)
    config: dict[str, Any] = Field(description="Options, as `--name` or `name` keys")


class DataloaderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overwrite: bool = False
