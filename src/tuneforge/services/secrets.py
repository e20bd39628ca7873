"""Random tokens and their stored digests. Keys and session tokens are high-entropy, so SHA-256 suffices."""

from __future__ import annotations

import hashlib
import os
import secrets
import string
from pathlib import Path

_ALPHANUMERIC = string.ascii_letters + string.digits
API_KEY_PREFIX = "st_"


def new_api_key() -> str:
    return API_KEY_PREFIX + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))


def looks_like_api_key(value: str) -> bool:
    body = value[len(API_KEY_PREFIX) :]
    return value.startswith(API_KEY_PREFIX) and len(body) == 32 and all(c in _ALPHANUMERIC for c in body)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def stored_key(path: Path) -> bytes:
    """A server secret kept in a file of its own (0600), made on first use; several processes may race to make it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
