"""The feature vector of a user-seller pair, from its state and the current profiles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamapp.models import KIND_ORDER, from_micros
from streamapp.pair_state import WINDOWS_US, PairState
from streamapp.score import Scoring, user_seller_score


def pair_id(user_id: str, seller_id: str) -> str:
    """The contract's pair id (Chalk's pattern for pair entities)."""
    return f"{user_id}-{seller_id}"


def category_features(
    favorites: set[str] | frozenset[str], categories: set[str] | frozenset[str]
) -> tuple[bool, int, float]:
    """(favorites_match, category_overlap, category_jaccard)."""
    overlap = len(favorites & categories)
    union = len(favorites | categories)
    return overlap > 0, overlap, (overlap / union if union else 0.0)


def feature_vector(
    user_id: str,
    seller_id: str,
    state: PairState | None,
    favorites: Iterable[str],
    categories: Iterable[str],
    as_of_us: int,
    scoring: Scoring,
) -> dict[str, Any]:
    """The contract's feature vector (fields of models.FeatureVector) as a plain dict."""
    match, overlap, jaccard = category_features(set(favorites), set(categories))
    state = state if state is not None and state.total else None
    counts = state.counts if state else [0, 0, 0, 0]
    return dict(
        id=pair_id(user_id, seller_id),
        user_id=user_id,
        seller_id=seller_id,
        number_of_interactions=sum(counts),
        interactions_by_kind={kind.value: n for kind, n in zip(KIND_ORDER, counts, strict=True)},
        interactions_1d=state.window_count(as_of_us, WINDOWS_US["1d"]) if state else 0,
        interactions_7d=state.window_count(as_of_us, WINDOWS_US["7d"]) if state else 0,
        interactions_30d=state.window_count(as_of_us, WINDOWS_US["30d"]) if state else 0,
        first_interaction_at=_moment(state.first_us if state else None),
        last_interaction_at=_moment(state.last_us if state else None),
        favorites_match=match,
        category_overlap=overlap,
        category_jaccard=jaccard,
        user_seller_score=user_seller_score(state, match, as_of_us, scoring),
        as_of=from_micros(as_of_us),
    )


def _moment(micros: int | None) -> Any:
    return None if micros is None else from_micros(micros)


TIME_FIELDS = ("first_interaction_at", "last_interaction_at", "as_of")


def jsonable(vector: dict[str, Any]) -> dict[str, Any]:
    """The vector with its times as ISO-8601 strings (what the API and topic carry)."""
    out = dict(vector)
    for name in TIME_FIELDS:
        if out[name] is not None:
            out[name] = out[name].isoformat()
    return out
