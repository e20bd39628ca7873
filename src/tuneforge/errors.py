"""Typed errors raised anywhere in tuneforge.

They carry a human message and, where it helps, per-field errors. They know nothing of HTTP:
`tuneforge.api.errors` maps each kind to a status code in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class TuneforgeError(Exception):
    """Base class: `detail` is safe to show to the caller."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class BadRequest(TuneforgeError):
    """The request cannot be acted on as sent."""


class NotAuthenticated(TuneforgeError):
    """No valid credentials."""


class Forbidden(TuneforgeError):
    """Valid credentials, but not allowed."""


class NotFound(TuneforgeError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class Conflict(TuneforgeError):
    """The request clashes with the current state."""


class TooLarge(TuneforgeError):
    """The request body or an uploaded file is over a configured limit."""


class StorageFull(TuneforgeError):
    """The server could not store what the request sent: its disk (or quota) is full. Nothing was kept."""


class Invalid(TuneforgeError):
    """Well-formed but semantically invalid input (per-field errors attached)."""


class ConfigInvalid(Invalid):
    """A training config failed validation; carries the warnings too, for the validate-shaped 422 body."""

    def __init__(self, detail: str, errors: list[FieldError], warnings: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors)
        self.warnings = warnings or []


class RateLimited(TuneforgeError):
    """Too many attempts; try again after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))
