"""Request bodies of the configuration routes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from tuneforge.options.capabilities import FAMILIES
from tuneforge.options.registry import FamilyName

# Environment names become folder names: letters, digits, `.`, `_`, `-`, starting with a letter or digit, never
# two dots in a row; at most 100. Two names are routes of /api/configs themselves.
ENV_NAME_PATTERN = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_-])*\.?$"
ENV_NAME_MAX = 100
RESERVED_NAMES = ("options", "examples")


def env_name_problem(name: str, reserved_too: bool = True) -> str | None:
    """Why `name` cannot name an environment, or None."""
    if len(name) > ENV_NAME_MAX or not re.fullmatch(ENV_NAME_PATTERN, name):
        return (f"use 1-{ENV_NAME_MAX} letters, digits, '.', '_' or '-', starting with a letter or digit, "
                "without '..'")
    if reserved_too and name in RESERVED_NAMES:
        return f"{' and '.join(RESERVED_NAMES)} are reserved (they are routes of /api/configs); choose another name"
    return None


def _checked_env_name(name: str) -> str:
    if problem := env_name_problem(name):
        raise ValueError(f"Invalid environment name {name!r}: {problem}")
    return name


def _checked_path_name(name: str) -> str:
    """A name that looks an environment up: the listings' names are no environment's (a 404), not invalid."""
    if problem := env_name_problem(name, reserved_too=False):
        raise ValueError(f"Invalid environment name {name!r}: {problem}")
    return name


_ENV_NAME_SCHEMA = {"type": "string", "pattern": ENV_NAME_PATTERN, "maxLength": ENV_NAME_MAX,
                    "description": "Folder name: letters, digits, '.', '_', '-'"}
EnvName = Annotated[str, AfterValidator(_checked_env_name),
                    WithJsonSchema({**_ENV_NAME_SCHEMA, "not": {"enum": list(RESERVED_NAMES)}})]
EnvPathName = Annotated[str, AfterValidator(_checked_path_name), WithJsonSchema(_ENV_NAME_SCHEMA)]


class EnvironmentCreate(BaseModel):
    """A new environment: its family, or a shipped example to start from (whose family it takes)."""

    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=(), json_schema_extra={"anyOf": [
        {"required": ["model_family"], "properties": {"model_family": {"type": "string"}}},
        {"required": ["example"], "properties": {"example": {"type": "string", "minLength": 1}}}]})

    name: EnvName
    model_family: FamilyName | None = Field(None, description="Required unless `example`")
    model_flavour: str | None = Field(None, max_length=100)
    model_type: Literal["full", "lora"] | None = None
    lora_type: Literal["standard", "lycoris"] | None = None
    description: str = Field("", max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    example: str | None = Field(None, max_length=200, description="Start from a shipped example (GET /examples)")

    @model_validator(mode="after")
    def _family_or_example(self) -> EnvironmentCreate:
        if self.model_family is None and not self.example:
            raise ValueError(f"send model_family ({' or '.join(FAMILIES)}) or an example to start from")
        return self


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, max_length=200, description="Must match the path if given")
    description: str | None = Field(None, max_length=2000)
    tags: list[str] | None = Field(None, max_length=50)
    config: dict[str, Any] = Field(description="Options, as `--name` or `name` keys")


class DataloaderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    overwrite: bool = False
