"""Request parts checked and encoded before use: pure functions, no faust, unit-tested.

A malformed request must get a 4xx, never a 5xx: everything here raises HTTPError(400)
(or returns a value) for any input string.
"""

from __future__ import annotations

import re

from streamapp.errors import HTTPError

# ASCII digits only: str.isdigit() is also true for U+00B2 (superscript two, which int()
# refuses), int() also takes full-width and Arabic-Indic digits, and int() raises on more
# than 4,300 digits.
_K = re.compile(r"[0-9]{1,6}")


def parse_k(raw: str | None, max_k: int, default: int = 10) -> int:
    """The `k` of /users/{id}/top-sellers: 1 to max_k in ASCII digits, else a 400."""
    if raw is None:
        return default
    if _K.fullmatch(raw) is None or not 1 <= int(raw) <= max_k:
        raise HTTPError(400, f"k must be an integer from 1 to {max_k} (ASCII digits)")
    return int(raw)
