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


def parse_k(raw: str | list[str] | None, max_k: int, default: int = 10) -> int:
    """The `k` of /users/{id}/top-sellers: 1 to max_k in ASCII digits, given at most once,
    else a 400."""
    if isinstance(raw, list):
        if len(raw) > 1:
            raise HTTPError(400, "k is given more than once")
        raw = raw[0] if raw else None
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


def check_path_utf8(raw_path: str) -> None:
    """Every segment of the request path, percent-decoded, must be UTF-8: the web server
    keeps an undecodable escape like %FF as the literal text "%FF", which would then be
    taken for the id "%FF" (the same as "%25FF"). A 400 instead."""
    for segment in raw_path.split("?", 1)[0].split("/"):
        if "%" in segment:
            try:
                urllib.parse.unquote_to_bytes(segment).decode("utf-8")
            except UnicodeDecodeError:
                raise HTTPError(400, "the path is not valid UTF-8 once percent-decoded") from None
