"""Request parts checked and encoded before use: pure functions, no faust, unit-tested.

A malformed request must get a 4xx, never a 5xx: everything here raises HTTPError(400)
(or returns a value) for any input string.
"""

from __future__ import annotations

import re
import urllib.parse

import orjson

from streamapp.core.models import MAX_ID_LENGTH
from streamapp.http.errors import HTTPError

# ASCII digits only: str.isdigit() is also true for U+00B2 (superscript two, which int()
# refuses), int() also takes full-width and Arabic-Indic digits, and int() raises on more
# than 4,300 digits.
_K = re.compile(r"[0-9]{1,6}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PAIR_KEYS = frozenset(("user_id", "seller_id"))


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


def query_pairs(body: bytes) -> list[tuple[str, str]] | None:
    """The pairs of a POST /affinity/query body when it is plainly valid, else None: then
    models.AffinityQuery validates it and names what is wrong (the same 4xx as ever). A
    stricter subset of what AffinityQuery accepts (tests/unit/test_request_input.py), at a
    fraction of the cost per pair of a pydantic model."""
    try:
        query = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(query) is not dict or len(query) != 1 or type(query.get("pairs")) is not list:
        return None
    out: list[tuple[str, str]] = []
    for pair in query["pairs"]:
        if type(pair) is not dict or pair.keys() != _PAIR_KEYS:
            return None
        user_id, seller_id = pair["user_id"], pair["seller_id"]
        # Strings of 1 to MAX_ID_LENGTH characters (inline: this runs for every pair).
        if not (
            type(user_id) is str
            and type(seller_id) is str
            and 0 < len(user_id) <= MAX_ID_LENGTH
            and 0 < len(seller_id) <= MAX_ID_LENGTH
        ):
            return None
        out.append((user_id, seller_id))
    # One search over every id at once: a control character in any is one in their join.
    if _CONTROL.search("".join(part for pair in out for part in pair)) is not None:
        return None
    return out
