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
from streamapp.core.times import event_iso, iso_micros

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
            event_iso(state.first_us),
            event_iso(state.last_us),
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


def static_text(parts: StaticParts) -> tuple[bytes, bytes]:
    """(head, middle) of the vector's JSON text (_TEXT) for these static parts."""
    pid, user_id, seller_id, total, like, view, purchase, other, first, last = parts[:10]
    head = orjson.dumps(
        {
            "id": pid,
            "user_id": user_id,
            "seller_id": seller_id,
            "number_of_interactions": total,
            "interactions_by_kind": {LIKE: like, VIEW: view, PURCHASE: purchase, OTHER: other},
        }
    )[:-1]
    middle = orjson.dumps(
        {
            "first_interaction_at": first,
            "last_interaction_at": last,
            "favorites_match": parts[10],
            "category_overlap": parts[11],
            "category_jaccard": parts[12],
        }
    )[1:-1]
    return head, middle


def vector_text(
    head: bytes, middle: bytes, w1: int, w7: int, w30: int, score: float, as_of_json: bytes
) -> bytes:
    """The vector's JSON text; `as_of_json` is orjson.dumps(as_of text)."""
    return _TEXT % (head, w1, w7, w30, middle, orjson.dumps(score), as_of_json)


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
    """The contract's feature vector (fields of models.FeatureVector), JSON-ready.
    `as_of_text` is iso_micros(as_of_us) when the caller already has it (bulk queries)."""
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
