"""user_seller_score: decayed, weighted interactions plus a favorites bonus; ranking."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from streamapp.pair_state import US


class Decayed(Protocol):
    """What a score needs: PairState, or pair_state.Summary read from a stored header."""

    @property
    def total(self) -> int: ...
    @property
    def ref_us(self) -> int: ...
    @property
    def acc(self) -> list[float] | tuple[float, float, float, float]: ...


@dataclass(frozen=True)
class Scoring:
    weights: tuple[float, float, float, float]  # LIKE, VIEW, PURCHASE, OTHER
    half_life_s: float
    favorites_bonus: float


def interaction_score(state: Decayed | None, as_of_us: int, scoring: Scoring) -> float:
    """sum over interactions of weight(kind) * 2^(-(as_of - on) / half_life)."""
    if state is None or state.total == 0:
        return 0.0
    weighted = sum(w * a for w, a in zip(scoring.weights, state.acc, strict=True))
    exponent = -(as_of_us - state.ref_us) / (scoring.half_life_s * US)
    # Outside float range the decay is 0 (far past) or capped (events far in the future).
    exponent = min(max(exponent, -1100.0), 1000.0)
    return weighted * 2.0**exponent


def user_seller_score(
    state: Decayed | None, favorites_match: bool, as_of_us: int, scoring: Scoring
) -> float:
    bonus = scoring.favorites_bonus if favorites_match else 0.0
    return interaction_score(state, as_of_us, scoring) + bonus


@dataclass(frozen=True, order=True)
class Ranked:
    score: float
    number_of_interactions: int
    seller_id: str


def top_k(candidates: Iterable[Ranked], k: int) -> list[Ranked]:
    """Best first: higher score, then more interactions, then seller id (stable ties)."""
    return heapq.nsmallest(
        k, candidates, key=lambda r: (-r.score, -r.number_of_interactions, r.seller_id)
    )
