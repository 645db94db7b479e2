"""The parts of recently asked pairs' feature vectors that do not move with `as_of`.

A ranking service asks for the same pairs again and again, and of a vector only the window
counts, the score and `as_of` move with time; the rest (ids, counts, first/last times,
category features) changes only when the pair is counted again or a profile changes. Each
entry is kept with what it was built from: the pair's stored bytes and the two category
sets. A lookup reads the pair as always and takes the entry only where those are the same
(a byte compare, two small set compares), so an answer is the one feature_vector() gives,
never an older one: windows and score are computed at every call from the kept bytes, with
the same arithmetic. The static parts are kept as the vector's JSON text around the moving
fields (features.head_text, middle_text), so a hit is one format, not a dict built and
encoded.

An entry is one tuple of plain values (bytes, strings, numbers, tuples of them), which the
garbage collector stops tracking at its first pass: a memo of tens of thousands of objects
it had to scan made collections of 9 ms. Hot pairs whose event times spill into chunks
(pair_state.H_N_TIME_CHUNKS) are not kept: their windows read further keys, whose bytes an
entry could not vouch for.

A first sight reads the stored header (pair_state.header) and formats the texts directly,
with the category features' text kept per pair of sets: no PairView, no dicts encoded
(bench/bulk_micro.py: 14 -> 12 us a pair, most of a bulk query's pairs at first sight).
"""

from __future__ import annotations

from typing import Any

from streamapp.core.features import (
    category_part,
    head_text,
    middle_text,
    pair_id,
    vector_text,
)
from streamapp.core.pair_state import (
    FEW_TIMES,
    H_ACC,
    H_COUNTS,
    H_FIRST,
    H_LAST,
    H_N_TIME_CHUNKS,
    H_N_TIMES,
    H_REF,
    few_times,
    few_window_counts,
    header,
    inline_times_at,
    inline_window_counts,
)
from streamapp.core.score import Scoring, decay, weighted_sum
from streamapp.core.times import iso_micros

# Entries per generation, and the bytes they may hold (entry_bytes: a pair keeps up to
# 1,024 event times inline, 8 KB, plus its vector's text): two generations hold at most
# about 2 x (20,000 x 0.5 KB of tuple and numbers + 16 MB), some 50 MB.
CAPACITY = 20_000
BYTES_PER_GENERATION = 16 * 1024 * 1024
TIME_BYTES = 44  # an event time kept as a Python int (36 bytes) and its slot in a tuple

# An entry: the vector's JSON text around its moving fields (features._TEXT's head and
# middle) and the part of the score that does not decay, then what they were built from and
# what the moving fields need: the stored bytes, the favorites and the categories (as
# tuples, one per distinct set), the inline event times (a tuple of them where there are at
# most FEW_TIMES, most pairs' case; else their offset in the stored bytes, read in place;
# None where nothing was counted), their number, ref_us and the weighted sum weights . acc.
# One tuple, so one object for the collector to see once.
_Entry = tuple[Any, ...]
HEAD, MIDDLE, BASE, RAW, FAVORITES, CATEGORIES, TIMES, TIMES_N, REF_US, WEIGHTED = range(10)


# Entries of the dropped generation freed per entry kept, at least; and at least as many
# bytes as were kept (entry_bytes). A generation ends after CAPACITY entries or
# BYTES_PER_GENERATION bytes kept, so the dropped one is gone by then, whichever ends it
# (less than one entry's bytes may be left, freed at the swap).
FREED_PER_KEEP = 2


class VectorMemo:
    """Pair key -> the as_of-independent part of its vector, in two generations: when the
    newer fills up it becomes the older and the oldest is dropped, so a pair asked for
    again within about CAPACITY other pairs is kept (an approximate LRU at dict cost).
    The dropped generation is freed a few entries per entry kept (FREED_PER_KEEP), not at
    once: freeing 20,000 entries in one go held the event loop 6-8 ms, in the middle of a
    query. At most one dropped generation waits."""

    def __init__(self, scoring: Scoring, capacity: int = CAPACITY) -> None:
        self.scoring = scoring
        self.capacity = capacity
        self._new: dict[bytes, _Entry] = {}
        self._old: dict[bytes, _Entry] = {}
        self._dropped: dict[bytes, _Entry] = {}  # the generation being freed
        self._unfreed = 0  # bytes kept since the swap less bytes freed of the dropped one
        self._tuples: dict[frozenset[str], tuple[str, ...]] = {}
        self._categories: dict[
            tuple[frozenset[str], frozenset[str]],
            tuple[bytes, float, tuple[str, ...], tuple[str, ...]],
        ] = {}
        self._new_bytes = 0

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def texts(
        self,
        pairs: list[tuple[str, str]],
        keys: list[bytes],
        raws: list[bytes | None],
        favorites: list[frozenset[str]],
        categories: list[frozenset[str]],
        as_of_us: int,
        as_of_json: bytes,
    ) -> list[bytes | None]:
        """The JSON texts of the vectors of `pairs`, stored under `keys` as `raws`: from the
        memo where it holds an entry built from these bytes and sets, else built (and kept);
        None for a pair whose windows read chunks (the caller builds it with text_parts
        and a loader). One loop for a slice of a query: most of a bulk query's cost per pair
        was calls."""
        new_get, old_get, keep, build = self._new.get, self._old.get, self._keep, self.build
        scoring = self.scoring
        out: list[bytes | None] = []
        append = out.append
        for pair, key, raw, fav, cats in zip(pairs, keys, raws, favorites, categories, strict=True):
            entry = new_get(key)
            if entry is None:
                entry = old_get(key)
                if entry is None:
                    append(build(key, pair[0], pair[1], raw, fav, cats, as_of_us, as_of_json))
                    continue
                keep(key, entry)
            kept_fav, kept_cats = entry[FAVORITES], entry[CATEGORIES]
            # The same bytes and the same sets: as many members, all of the kept ones in them.
            if not (
                entry[RAW] == raw
                and len(fav) == len(kept_fav)
                and len(cats) == len(kept_cats)
                and fav.issuperset(kept_fav)
                and cats.issuperset(kept_cats)
            ):
                append(build(key, pair[0], pair[1], raw, fav, cats, as_of_us, as_of_json))
                continue
            times = entry[TIMES]
            if times is None:  # nothing counted
                append(vector_text(entry[HEAD], entry[MIDDLE], 0, 0, 0, entry[BASE], as_of_json))
                continue
            if type(times) is int:  # many: where they are in the stored bytes
                times = memoryview(raw)[times : times + 8 * entry[TIMES_N]].cast("q")  # type: ignore[index]
                w1, w7, w30 = inline_window_counts(times, as_of_us)
            else:
                w1, w7, w30 = few_window_counts(times, as_of_us)
            score = entry[BASE] + decay(entry[WEIGHTED], entry[REF_US], as_of_us, scoring)
            append(vector_text(entry[HEAD], entry[MIDDLE], w1, w7, w30, score, as_of_json))
        return out

    def build(
        self,
        key: bytes,
        user_id: str,
        seller_id: str,
        raw: bytes | None,
        favorites: frozenset[str],
        categories: frozenset[str],
        as_of_us: int,
        as_of_json: bytes,
    ) -> bytes | None:
        """The JSON text of the vector of the pair stored under `key` as `raw`, built and
        kept for the next `texts` (`as_of_json`: the as_of text as JSON); None where the
        pair's windows read chunks."""
        scoring = self.scoring
        category_json, base, fav_t, cats_t = self._category_parts(favorites, categories)
        if raw:
            h = header(raw)
            if h[H_N_TIME_CHUNKS]:
                return None
            like, view, purchase, other = h[H_COUNTS : H_COUNTS + 4]
        else:
            like = view = purchase = other = 0
        pid = pair_id(user_id, seller_id)
        head = head_text(pid, user_id, seller_id, like, view, purchase, other)
        if raw and like + view + purchase + other:  # as feature_vector() computes them
            n, ref_us, at = h[H_N_TIMES], h[H_REF], inline_times_at(h)
            if n <= FEW_TIMES:
                times: tuple[int, ...] | int | None = few_times(raw, at, n)
                w1, w7, w30 = few_window_counts(times, as_of_us)
            else:
                times = at
                in_place = memoryview(raw)[at : at + 8 * n].cast("q")
                w1, w7, w30 = inline_window_counts(in_place, as_of_us)
            weighted = weighted_sum(h[H_ACC : H_ACC + 4], scoring)
            score = base + decay(weighted, ref_us, as_of_us, scoring)
            first, last = iso_micros(h[H_FIRST]), iso_micros(h[H_LAST])
        else:
            w1 = w7 = w30 = n = ref_us = 0
            score, weighted, times, first, last = base, 0.0, None, None, None
        middle = middle_text(first, last, category_json)
        self._keep(key, (head, middle, base, raw, fav_t, cats_t, times, n, ref_us, weighted))
        return vector_text(head, middle, w1, w7, w30, score, as_of_json)

    def _category_parts(
        self, favorites: frozenset[str], categories: frozenset[str]
    ) -> tuple[bytes, float, tuple[str, ...], tuple[str, ...]]:
        """The category features' text (features.category_text), the score's part that
        does not decay and the two sets as an entry keeps them (_tuple), one per pair of
        sets: the same few sets recur."""
        found = self._categories.get((favorites, categories))
        if found is None:
            if len(self._categories) >= self.capacity:
                self._categories.clear()
            text, match = category_part(favorites, categories)
            base = self.scoring.favorites_bonus if match else 0.0
            found = (text, base, self._tuple(favorites), self._tuple(categories))
            self._categories[(favorites, categories)] = found
        return found

    def _tuple(self, categories: frozenset[str]) -> tuple[str, ...]:
        """The set as a tuple, one per distinct set (the same few sets recur)."""
        found = self._tuples.get(categories)
        if found is None:
            if len(self._tuples) >= self.capacity:
                self._tuples.clear()
            found = self._tuples[categories] = tuple(categories)
        return found

    def _keep(self, key: bytes, entry: _Entry) -> None:
        size = entry_bytes(entry)
        if len(self._new) >= self.capacity or self._new_bytes + size > BYTES_PER_GENERATION:
            self._dropped.clear()  # less than one entry's bytes: the freeing kept pace
            self._dropped, self._unfreed = self._old, 0
            self._old, self._new, self._new_bytes = self._new, {}, 0
        self._new[key] = entry
        self._new_bytes += size
        dropped = self._dropped
        if dropped:
            unfreed = self._unfreed + size
            freed = 0
            while dropped and (freed < FREED_PER_KEEP or unfreed > 0):
                unfreed -= entry_bytes(dropped.popitem()[1])
                freed += 1
            self._unfreed = unfreed


def entry_bytes(entry: _Entry) -> int:
    """What an entry holds beyond its fixed-size fields: the stored bytes, the vector's
    text, the event times kept as numbers."""
    times = entry[TIMES]
    kept_times = len(times) if type(times) is tuple else 0
    return len(entry[RAW] or b"") + len(entry[HEAD]) + len(entry[MIDDLE]) + TIME_BYTES * kept_times
