"""The parts of recently asked pairs' feature vectors that do not move with `as_of`.

A ranking service asks for the same pairs again and again, and of a vector only the window
counts, the score and `as_of` move with time; the rest (ids, counts, first/last times,
category features) changes only when the pair is counted again or a profile changes. Each
entry is kept with what it was built from: the pair's stored bytes and the two category
sets. A lookup reads the pair as always and takes the entry only where those are the same
(a byte compare, two small set compares), so an answer is the one feature_vector() gives,
never an older one: windows and score are computed at every call from the kept bytes, with
the same arithmetic.

An entry is one tuple of plain values (bytes, strings, numbers, tuples of them), which the
garbage collector stops tracking at its first pass: a memo of tens of thousands of objects
it had to scan made collections of 9 ms. Hot pairs whose event times spill into chunks
(PairView.tchunks) are not kept: their windows read further keys, whose bytes an entry
could not vouch for.
"""

from __future__ import annotations

from typing import Any

from streamapp.core.features import SCORE_BASE, StaticParts, assemble, static_parts
from streamapp.core.pair_state import PairView, inline_window_counts
from streamapp.core.score import Scoring, decay, weighted_sum

# Entries per generation; an entry is about 1 KB, so two generations stay under 40 MB.
CAPACITY = 20_000

# (stored bytes, favorites, categories, static parts, offset of the inline event times in
# the bytes or -1 where nothing was counted, their number, ref_us, weights . acc)
_Entry = tuple[bytes | None, tuple[str, ...], tuple[str, ...], StaticParts, int, int, int, float]


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
        favorites: frozenset[str],
        categories: frozenset[str],
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
            and entry[0] == raw
            and _same(favorites, entry[1])
            and _same(categories, entry[2])
        ):
            parts, at = entry[3], entry[4]
            if at < 0:
                return assemble(parts, 0, 0, 0, parts[SCORE_BASE], as_of_text)
            times = memoryview(raw)[at : at + 8 * entry[5]].cast("q")  # type: ignore[arg-type]
            w1, w7, w30 = inline_window_counts(times, as_of_us)
            score = parts[SCORE_BASE] + decay(entry[7], entry[6], as_of_us, self.scoring)
            return assemble(parts, w1, w7, w30, score, as_of_text)
        view = PairView(raw) if raw else None
        if view is not None and view.tchunks:
            return None
        scoring = self.scoring
        parts = static_parts(user_id, seller_id, view, favorites, categories, scoring)
        if view is not None and view.total:  # as feature_vector() computes them
            w1, w7, w30 = inline_window_counts(view.times, as_of_us)
            weighted = weighted_sum(view.acc, scoring)
            score = parts[SCORE_BASE] + decay(weighted, view.ref_us, as_of_us, scoring)
            at, n, ref_us = view.times_at, len(view.times), view.ref_us
        else:
            w1 = w7 = w30 = 0
            score, weighted, at, n, ref_us = parts[SCORE_BASE], 0.0, -1, 0, 0
        self._keep(key, (raw, tuple(favorites), tuple(categories), parts, at, n, ref_us, weighted))
        return assemble(parts, w1, w7, w30, score, as_of_text)

    def _keep(self, key: bytes, entry: _Entry) -> None:
        if len(self._new) >= self.capacity:
            self._old, self._new = self._new, {}
        self._new[key] = entry


def _same(now: frozenset[str], kept: tuple[str, ...]) -> bool:
    return len(now) == len(kept) and now.issuperset(kept)
