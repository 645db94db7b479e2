"""user_seller_score: decayed, weighted interactions plus a favorites bonus; ranking."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamapp.core.config import Settings
from streamapp.core.pair_state import US


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

    @classmethod
    def of(cls, settings: Settings) -> Scoring:
        """The score's parameters from STREAMAPP_WEIGHT_*, _HALF_LIFE, _FAVORITES_BONUS."""
        return cls(settings.weights.as_tuple(), settings.half_life_s, settings.favorites_bonus)


def decayed(acc: Sequence[float], ref_us: int, as_of_us: int, scoring: Scoring) -> float:
    """sum over interactions of weight(kind) * 2^(-(as_of - on) / half_life), from the
    per-kind sums `acc` kept decayed to `ref_us` (pair_state.py)."""
    return decay(weighted_sum(acc, scoring), ref_us, as_of_us, scoring)


def weighted_sum(acc: Sequence[float], scoring: Scoring) -> float:
    """The per-kind sums weighted: the decayed part of a score as of `ref_us`."""
    w = scoring.weights
    return w[0] * acc[0] + w[1] * acc[1] + w[2] * acc[2] + w[3] * acc[3]  # sum()'s order


def decay(weighted: float, ref_us: int, as_of_us: int, scoring: Scoring) -> float:
    """`weighted` (as of `ref_us`) decayed to `as_of_us`."""
    exponent = -(as_of_us - ref_us) / (scoring.half_life_s * US)
    # Outside float range the decay is 0 (far past) or capped (events far in the future).
    # (Comparisons, not min/max: this runs for every pair of every lookup.)
    if exponent < -1100.0:
        exponent = -1100.0
    elif exponent > 1000.0:
        exponent = 1000.0
    return weighted * 2.0**exponent


def interaction_score(state: Decayed | None, as_of_us: int, scoring: Scoring) -> float:
    if state is None or state.total == 0:
        return 0.0
    return decayed(state.acc, state.ref_us, as_of_us, scoring)


# A candidate of top-k: (-score, -number_of_interactions, seller_id), so that the smallest
# is the best: higher score, then more interactions, then seller id.
Ranked = tuple[float, int, str]


def top_k(candidates: Iterable[Ranked], k: int) -> list[Ranked]:
    """The k best, best first."""
    return heapq.nsmallest(k, candidates)
