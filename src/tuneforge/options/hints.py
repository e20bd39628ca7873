"""The "did you mean" hint every option, key and name error ends with."""

from __future__ import annotations

import difflib


def did_you_mean(name: str, candidates: list[str]) -> str:
    """A "; did you mean '…'?" suffix, or "" when nothing is close."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
