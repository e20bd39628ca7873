"""Small types of the request schemas, made so that the server accepts exactly what the published schema says."""

from typing import Any

from pydantic import BeforeValidator


def _whole_number(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer; strict pydantic would not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The largest value of the database's INTEGER columns (ids, event indexes): 32 bits on PostgreSQL. A larger one
# names no row, and PostgreSQL would refuse even to compare it.
DB_INT_MAX = 2**31 - 1

# An integer as JSON Schema has it, in a strict model (no "3", no true): `Annotated[int, Field(ge=1), WHOLE_NUMBER]`.
# Bounds go before it, or pydantic publishes them as unknown "ge"/"le" keywords instead of minimum/maximum.
WHOLE_NUMBER = BeforeValidator(_whole_number)

# Character classes for patterns, spelled out: `\s` means different things in Python, in pydantic's Rust engine and
# in JavaScript (the schema's regex dialect).
# What str.isspace() (and str.strip()) treats as blank:
BLANK = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# C0 and C1 control characters and DEL:
CONTROL = r"\x00-\x1f\x7f-\x9f"
