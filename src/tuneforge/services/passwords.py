"""Argon2 password hashing and the minimum password rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tuneforge.errors import FieldError, Invalid
from tuneforge.schemas.users import COMMON_PASSWORDS

_hasher = PasswordHasher()


def check_strength(password: str, field: str = "password") -> None:
    if password.lower() in COMMON_PASSWORDS:  # the schema refuses them as written; this, in any case
        raise Invalid(
            "Password is too common",
            [FieldError(field, "This password is among the most common ones; choose another.")],
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the account does not exist, so timing does not reveal usernames.
DUMMY_HASH = hash_password("tuneforge-no-such-user")
