"""The feature vector of a user-seller pair, from its state and the current profiles.

Built directly in its JSON form (times as ISO-8601 strings): it is computed for every
lookup and every published update, so no intermediate objects.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from streamapp.core.models import KIND_ORDER
from streamapp.core.pair_state import Loader, PairState
from streamapp.core.score import Scoring, interaction_score
from streamapp.core.times import iso_micros

KIND_NAMES = tuple(kind.value for kind in KIND_ORDER)
LIKE, VIEW, PURCHASE, OTHER = KIND_NAMES  # the stored order of the counts


def no_chunks(suffix: bytes) -> bytes | None:
    return None


def _escape(entity_id: str) -> str:
    if "-" not in entity_id and "\\" not in entity_id:
        return entity_id  # the usual id: nothing to escape
    # Backslash first, so the backslashes added for '-' are not doubled again.
    return entity_id.replace("\\", "\\\\").replace("-", "\\-")


def pair_id(user_id: str, seller_id: str) -> str:
    """The contract's "<user_id>-<seller_id>" (Chalk's pattern for pair entities), made
    unambiguous: inside each id "\\" becomes "\\\\" and "-" becomes "\\-", so the only bare
    "-" is the separator. ("a-b", "c") -> "a\\-b-c", ("a", "b-c") -> "a-b\\-c"; ids without
    "-" and "\\" keep the plain form."""
    return f"{_escape(user_id)}-{_escape(seller_id)}"


def split_pair_id(text: str) -> tuple[str, str]:
    """The inverse of pair_id (the proof that it is unambiguous); ValueError if malformed."""
    parts: list[list[str]] = [[]]
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped not in ("\\", "-"):
                raise ValueError(f"bad escape in pair id {text!r}")
            parts[-1].append(escaped)
        elif char == "-":
            parts.append([])
        else:
            parts[-1].append(char)
    if len(parts) != 2:
        raise ValueError(f"a pair id has exactly one unescaped '-': {text!r}")
    return "".join(parts[0]), "".join(parts[1])


def category_features(
    favorites: Collection[str], categories: Collection[str]
) -> tuple[bool, int, float]:
    """(favorites_match, category_overlap, category_jaccard)."""
    if not favorites or not categories:
        return False, 0, 0.0
    fav = favorites if isinstance(favorites, (set, frozenset)) else set(favorites)
    cats = categories if isinstance(categories, (set, frozenset)) else set(categories)
    overlap = len(fav & cats)
    union = len(fav) + len(cats) - overlap
    return overlap > 0, overlap, overlap / union


# The fields of a vector that do not move with as_of, in the vector's order, and the part of
# the score that does not decay (the favorites bonus or 0.0): (id, user_id, seller_id,
# number_of_interactions, like, view, purchase, other, first_interaction_at,
# last_interaction_at, favorites_match, category_overlap, category_jaccard, score_base).
# One flat tuple of plain values: the garbage collector stops tracking it at its first pass
# (vector_memo.py keeps thousands).
StaticParts = tuple[
    str, str, str, int, int, int, int, int, str | None, str | None, bool, int, float, float
]
SCORE_BASE = 13  # the index of score_base in StaticParts


def static_parts(
    user_id: str,
    seller_id: str,
    state: PairState | None,
    favorites: Collection[str],
    categories: Collection[str],
    scoring: Scoring,
) -> StaticParts:
    match, overlap, jaccard = category_features(favorites, categories)
    if state is not None and state.total:
        c = state.counts
        return (
            pair_id(user_id, seller_id),
            user_id,
            seller_id,
            c[0] + c[1] + c[2] + c[3],
            c[0],
            c[1],
            c[2],
            c[3],
            iso_micros(state.first_us),
            iso_micros(state.last_us),
            match,
            overlap,
            jaccard,
            scoring.favorites_bonus if match else 0.0,
        )
    return (
        pair_id(user_id, seller_id),
        user_id,
        seller_id,
        0,
        0,
        0,
        0,
        0,
        None,
        None,
        match,
        overlap,
        jaccard,
        scoring.favorites_bonus if match else 0.0,
    )


def assemble(
    parts: StaticParts, w1: int, w7: int, w30: int, score: float, as_of_text: str
) -> dict[str, Any]:
    """The contract's feature vector (fields of models.FeatureVector), JSON-ready."""
    pid, user_id, seller_id, total, like, view, purchase, other, first, last = parts[:10]
    return {
        "id": pid,
        "user_id": user_id,
        "seller_id": seller_id,
        "number_of_interactions": total,
        "interactions_by_kind": {LIKE: like, VIEW: view, PURCHASE: purchase, OTHER: other},
        "interactions_1d": w1,
        "interactions_7d": w7,
        "interactions_30d": w30,
        "first_interaction_at": first,
        "last_interaction_at": last,
        "favorites_match": parts[10],
        "category_overlap": parts[11],
        "category_jaccard": parts[12],
        "user_seller_score": score,
        "as_of": as_of_text,
    }


# A vector as JSON text, around the fields that move with as_of: the text before the windows
# ("head": id .. interactions_by_kind, no closing brace) and the one between windows and score
# ("middle": first_interaction_at .. category_jaccard, no braces). A lookup fills in the rest
# with one format: the same bytes orjson.dumps(assemble(...)) gives (tests/unit/
# test_features.py), at a third of its cost.
_TEXT = (
    b'%b,"interactions_1d":%d,"interactions_7d":%d,"interactions_30d":%d,'
    b'%b,"user_seller_score":%b,"as_of":%b}'
)


_HEAD = (
    b'{"id":%%b,"user_id":%%b,"seller_id":%%b,"number_of_interactions":%%d,'
    b'"interactions_by_kind":{"%s":%%d,"%s":%%d,"%s":%%d,"%s":%%d}'
    % tuple(n.encode() for n in KIND_NAMES)
)


def head_text(
    pid: str, user_id: str, seller_id: str, like: int, view: int, purchase: int, other: int
) -> bytes:
    """The vector's text before its windows (_TEXT's "head"; `pid`: pair_id): one format,
    the ids encoded by orjson."""
    dumps = orjson.dumps
    return _HEAD % (
        dumps(pid),
        dumps(user_id),
        dumps(seller_id),
        like + view + purchase + other,
        like,
        view,
        purchase,
        other,
    )


def category_text(match: bool, overlap: int, jaccard: float) -> bytes:
    """The category features (category_features) as the end of _TEXT's "middle" (no
    braces): the same for every pair of a user's favorites and a seller's categories, so a
    caller may keep it per pair of sets."""
    return orjson.dumps(
        {"favorites_match": match, "category_overlap": overlap, "category_jaccard": jaccard}
    )[1:-1]


# category_part's texts, per pair of sets (the same few sets recur); emptied when full.
_CATEGORY_PARTS: dict[tuple[frozenset[str], frozenset[str]], tuple[bytes, bool]] = {}
CATEGORY_PARTS_MAX = 20_000


def category_part(favorites: frozenset[str], categories: frozenset[str]) -> tuple[bytes, bool]:
    """(category_text, favorites_match) of a user's favorites and a seller's categories,
    remembered per pair of sets."""
    found = _CATEGORY_PARTS.get((favorites, categories))
    if found is None:
        if len(_CATEGORY_PARTS) >= CATEGORY_PARTS_MAX:
            _CATEGORY_PARTS.clear()
        match, overlap, jaccard = category_features(favorites, categories)
        found = _CATEGORY_PARTS[(favorites, categories)] = (
            category_text(match, overlap, jaccard),
            match,
        )
    return found


def middle_text(first: str | None, last: str | None, category: bytes) -> bytes:
    """_TEXT's "middle": the first and last event times (ISO texts, which need no escaping:
    digits, '-', ':', '.', '+' and 'T') and `category` (category_text)."""
    if first is None or last is None:
        return b'"first_interaction_at":%b,"last_interaction_at":%b,%b' % (
            orjson.dumps(first),
            orjson.dumps(last),
            category,
        )
    return b'"first_interaction_at":"%b","last_interaction_at":"%b",%b' % (
        first.encode(),
        last.encode(),
        category,
    )


def vector_text(
    head: bytes, middle: bytes, w1: int, w7: int, w30: int, score: float, as_of_json: bytes
) -> bytes:
    """The vector's JSON text; `as_of_json` is orjson.dumps(as_of text)."""
    return _TEXT % (head, w1, w7, w30, middle, orjson.dumps(score), as_of_json)


# An affinity update: the vector's fields, then what it covers (models.AffinityUpdate).
_UPDATE_TEXT = _TEXT[:-1] + b',"interaction_id":%b,"interactions_covered":%d,"interaction_ids":%b}'
TextParts = tuple[bytes, bytes, int, int, int, float]


def text_parts(
    user_id: str,
    seller_id: str,
    state: PairState | None,
    favorites: frozenset[str],
    categories: frozenset[str],
    as_of_us: int,
    scoring: Scoring,
    load: Loader = no_chunks,
) -> TextParts:
    """(head, middle, w1, w7, w30, score) of the vector feature_vector() gives, for
    vector_text and update_text: the same numbers, formatted without a dict."""
    category, match = category_part(favorites, categories)
    score = scoring.favorites_bonus if match else 0.0
    if state is not None and state.total:
        like, view, purchase, other = state.counts
        w1, w7, w30 = state.window_counts(as_of_us, load)
        score += interaction_score(state, as_of_us, scoring)
        first: str | None = iso_micros(state.first_us)
        last: str | None = iso_micros(state.last_us)
    else:
        like = view = purchase = other = w1 = w7 = w30 = 0
        first = last = None
    head = head_text(pair_id(user_id, seller_id), user_id, seller_id, like, view, purchase, other)
    return head, middle_text(first, last, category), w1, w7, w30, score


def update_text(
    parts: TextParts, as_of_json: bytes, last_id: str, covered: int, ids: list[str] | None
) -> bytes:
    """An affinity update's JSON text: the vector of `parts` (text_parts) at the as_of of
    `as_of_json` (orjson.dumps of its text), then the interactions it covers; the bytes
    orjson.dumps gives the update as a dict (tests/unit/test_features.py)."""
    head, middle, w1, w7, w30, score = parts
    return _UPDATE_TEXT % (
        head,
        w1,
        w7,
        w30,
        middle,
        orjson.dumps(score),
        as_of_json,
        orjson.dumps(last_id),
        covered,
        orjson.dumps(ids),
    )


def feature_vector(
    user_id: str,
    seller_id: str,
    state: PairState | None,
    favorites: Collection[str],
    categories: Collection[str],
    as_of_us: int,
    scoring: Scoring,
    load: Loader = no_chunks,
    as_of_text: str | None = None,
) -> dict[str, Any]:
    """The contract's feature vector (fields of models.FeatureVector) as a dict: the plain
    statement of what a vector is, which the text paths (text_parts, vector_memo) are
    tested against byte for byte. `as_of_text`: iso_micros(as_of_us), if the caller has it."""
    parts = static_parts(user_id, seller_id, state, favorites, categories, scoring)
    score = parts[SCORE_BASE]
    if state is not None and state.total:
        w1, w7, w30 = state.window_counts(as_of_us, load)
        score += interaction_score(state, as_of_us, scoring)
    else:
        w1 = w7 = w30 = 0
    if as_of_text is None:
        as_of_text = iso_micros(as_of_us)
    return assemble(parts, w1, w7, w30, score, as_of_text)
