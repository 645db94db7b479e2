"""The parts of recently asked pairs' feature vectors that do not change with `as_of`.

A ranking service asks for the same pairs again and again, and of a vector only the window
counts, the score and `as_of` move with time; the rest (ids, counts, first/last times,
category features) changes only when the pair is counted again or a profile changes. Each
entry is kept with what it was built from: the pair's stored bytes and the two category
sets. A lookup reads the pair as always and takes the entry only where those are the same
(a byte compare, two identity checks), so an answer is the one feature_vector() gives, never
an older one: windows and score are computed from the kept decoded state at every call,
with the same arithmetic.

Hot pairs whose event times spill into chunks (PairView.tchunks) are not kept: their
windows read further keys, whose bytes the entry could not vouch for.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from streamapp.core.features import feature_vector, no_chunks
from streamapp.core.pair_state import PairView
from streamapp.core.score import Scoring, decay, weighted_sum

# Entries per generation: about 1.5 KB each, so two generations stay under 60 MB.
CAPACITY = 20_000


class _Entry:
    __slots__ = ("base", "categories", "favorites", "raw", "score_base", "view", "weighted")

    def __init__(
        self,
        raw: bytes | None,
        favorites: Collection[str],
        categories: Collection[str],
        base: dict[str, Any],
        view: PairView | None,
        score_base: float,
        weighted: float,
    ) -> None:
        self.raw = raw
        self.favorites = favorites
        self.categories = categories
        self.base = base  # the whole vector; windows, score and as_of are overwritten
        self.view = view  # None: nothing counted, so nothing moves with as_of
        self.score_base = score_base  # the favorites bonus or 0.0
        self.weighted = weighted  # weights . acc, the decayed part before its decay


class VectorMemo:
    """Pair key -> the as_of-independent part of its vector, in two generations: when the
    newer fills up it becomes the older and the oldest is dropped, so a pair asked for
    again within about CAPACITY other pairs is kept (an approximate LRU at dict cost)."""

    def __init__(self, scoring: Scoring, capacity: int = CAPACITY) -> None:
        self.scoring = scoring
        self.capacity = capacity
        self._new: dict[bytes, _Entry] = {}
        self._old: dict[bytes, _Entry] = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def vector(
        self,
        key: bytes,
        user_id: str,
        seller_id: str,
        raw: bytes | None,
        favorites: Collection[str],
        categories: Collection[str],
        as_of_us: int,
        as_of_text: str,
    ) -> dict[str, Any] | None:
        """The vector of the pair stored under `key` as `raw`, or None where the pair's
        windows read chunks (the caller builds it with feature_vector and a loader)."""
        entry = self._new.get(key)
        if entry is None:
            entry = self._old.get(key)
            if entry is not None:
                self._keep(key, entry)
        if (
            entry is not None
            and entry.raw == raw
            and (entry.favorites is favorites or entry.favorites == favorites)
            and (entry.categories is categories or entry.categories == categories)
        ):
            vector = entry.base.copy()
            view = entry.view
            if view is not None:
                w1, w7, w30 = view.window_counts(as_of_us, no_chunks)
                vector["interactions_1d"] = w1
                vector["interactions_7d"] = w7
                vector["interactions_30d"] = w30
                vector["user_seller_score"] = entry.score_base + decay(
                    entry.weighted, view.ref_us, as_of_us, self.scoring
                )
            vector["as_of"] = as_of_text
            return vector
        view = PairView(raw) if raw else None
        if view is not None and view.tchunks:
            return None
        scoring = self.scoring
        vector = feature_vector(
            user_id,
            seller_id,
            view,
            favorites,
            categories,
            as_of_us,
            scoring,
            no_chunks,
            as_of_text,
        )
        counted = view is not None and view.total > 0
        self._keep(
            key,
            _Entry(
                raw,
                favorites,
                categories,
                vector.copy(),
                view if counted else None,
                scoring.favorites_bonus if vector["favorites_match"] else 0.0,
                weighted_sum(view.acc, scoring) if counted else 0.0,  # type: ignore[union-attr]
            ),
        )
        return vector

    def _keep(self, key: bytes, entry: _Entry) -> None:
        if len(self._new) >= self.capacity:
            self._old, self._new = self._new, {}
        self._new[key] = entry
