"""Argon2 password hashing and the minimum password rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tuneforge.errors import FieldError, Invalid

_hasher = PasswordHasher()

# The most common passwords of at least 8 characters; refusing them stops the cheapest guesses.
_COMMON = frozenset(
    """password 12345678 123456789 1234567890 qwertyuiop password1 password123 iloveyou1 11111111
    00000000 abcd1234 qwerty123 1q2w3e4r 1qaz2wsx sunshine princess football baseball welcome1
    superman trustno1 letmein1 passw0rd changeme administrator admin123 adminadmin 87654321
    qwertyui asdfghjk zaq12wsx 123123123 987654321 monkey123 dragon123 master123 whatever
    starwars computer michelle jennifer 1234qwer q1w2e3r4 secret123""".split()
)


def check_strength(password: str, field: str = "password") -> None:
    if password.lower() in _COMMON:
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
