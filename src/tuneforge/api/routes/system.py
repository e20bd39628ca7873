"""Health and system information."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge import __version__
from tuneforge.api.deps import public

router = APIRouter(tags=["system"])


@router.get("/health")
@public
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}
