"""Request parts checked and encoded before use: pure functions, no faust, unit-tested.

A malformed request must get a 4xx, never a 5xx: everything here raises HTTPError(400)
(or returns a value) for any input string.
"""

from __future__ import annotations

import re
import urllib.parse

from streamapp.http.errors import HTTPError

# ASCII digits only: str.isdigit() is also true for U+00B2 (superscript two, which int()
# refuses), int() also takes full-width and Arabic-Indic digits, and int() raises on more
# than 4,300 digits.
_K = re.compile(r"[0-9]{1,6}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_k(raw: str | None, max_k: int, default: int = 10) -> int:
    """The `k` of /users/{id}/top-sellers: 1 to max_k in ASCII digits, else a 400."""
    if raw is None:
        return default
    if _K.fullmatch(raw) is None or not 1 <= int(raw) <= max_k:
        raise HTTPError(400, f"k must be an integer from 1 to {max_k} (ASCII digits)")
    return int(raw)


def encode_segment(text: str) -> str:
    """One path segment, percent-encoded so that any id survives a forward exactly: '/',
    '?', '#', '%', ' ' and non-ASCII are encoded by quote(safe=""), and '.' too, so that "."
    and ".." are never dot-segments that a URL library would remove."""
    return urllib.parse.quote(text, safe="").replace(".", "%2E")


def fill_path(template: str, values: dict[str, str]) -> str:
    """A route template ("/affinity/{user_id}/{seller_id}") with each placeholder replaced by
    its encoded value: the path of a forwarded request, built from the matched ids rather
    than from the decoded request path (which loses the boundaries of ids with '/')."""
    return _PLACEHOLDER.sub(lambda m: encode_segment(values[m.group(1)]), template)
