"""The answers of the lookup endpoints, computed from state: no faust, no HTTP.

The worker's views (worker/views.py) read its own tables; a serving process (serving/) reads the
same RocksDB databases as a secondary instance. Both hand their readers to the functions
here, so the two answer with the same code and the same numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from streamapp.core import seller_index
from streamapp.core.counting import pair_key
from streamapp.core.features import feature_vector
from streamapp.core.pair_state import PairState, summary
from streamapp.core.score import Ranked, Scoring, decayed, top_k
from streamapp.core.times import iso_micros

# Pairs computed between two turns of the event loop: a bulk query of 1,000 pairs gives
# ingest (in the worker) and other requests a turn every few milliseconds.
SLICE = 64


class PartitionReader(Protocol):
    """A table's partition databases: None / [None, ...] where a key (or the partition) is
    not here."""

    def read(self, partition: int, key: bytes) -> bytes | None: ...
    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]: ...


class CategoryReader(Protocol):
    def categories(self, entity_id: str) -> frozenset[str]: ...


@dataclass(frozen=True)
class Sources:
    pairs: PartitionReader
    user_sellers: PartitionReader
    users: CategoryReader
    sellers: CategoryReader
    home_partition: Callable[[str], int]
    scoring: Scoring


async def vectors(
    src: Sources, pairs: list[tuple[str, str]], as_of_us: int
) -> list[dict[str, Any]]:
    """Feature vectors, one per input pair, at one as_of: the pairs of a partition read with
    multi-gets, each profile read once."""
    as_of_text = iso_micros(as_of_us)
    by_partition: dict[int, list[tuple[str, str]]] = {}
    for pair in dict.fromkeys(pairs):
        by_partition.setdefault(src.home_partition(pair[0]), []).append(pair)
    favorites: dict[str, frozenset[str]] = {}
    done: dict[tuple[str, str], dict[str, Any]] = {}
    slices = [
        (partition, whole[i : i + SLICE])
        for partition, whole in by_partition.items()
        for i in range(0, len(whole), SLICE)
    ]
    for n, (partition, group) in enumerate(slices):
        if n:
            await asyncio.sleep(0)  # someone else's turn
        keys = [pair_key(u, s) for u, s in group]
        for (user_id, seller_id), key, raw in zip(
            group, keys, src.pairs.read_many(partition, keys), strict=True
        ):
            fav = favorites.get(user_id)
            if fav is None:
                fav = favorites[user_id] = src.users.categories(user_id)

            def load(suffix: bytes, key: bytes = key, p: int = partition) -> bytes | None:
                return src.pairs.read(p, key + suffix)

            done[(user_id, seller_id)] = feature_vector(
                user_id,
                seller_id,
                PairState.decode_for_lookup(raw) if raw else None,
                fav,
                src.sellers.categories(seller_id),
                as_of_us,
                src.scoring,
                load,
                as_of_text,
            )
    return [done[pair] for pair in pairs]


async def top_sellers(src: Sources, user_id: str, k: int, as_of_us: int) -> dict[str, Any]:
    """Rank the user's sellers from the pairs' stored headers alone (no full decode)."""
    partition = src.home_partition(user_id)

    def load(key: bytes) -> bytes | None:
        return src.user_sellers.read(partition, key)

    candidates = seller_index.sellers(user_id.encode(), load)
    favorites = src.users.categories(user_id)
    categories = src.sellers.categories
    scoring = src.scoring
    bonus = scoring.favorites_bonus
    ranked: list[Ranked] = []
    step = 16 * SLICE  # a header costs far less than a vector
    for start in range(0, len(candidates), step):
        if start:
            await asyncio.sleep(0)  # a user may have 100,000 sellers
        part = candidates[start : start + step]
        keys = [pair_key(user_id, s) for s in part]
        for seller_id, raw in zip(part, src.pairs.read_many(partition, keys), strict=True):
            if not raw:
                continue
            total, ref_us, acc = summary(raw)  # the header alone: no full decode
            score = decayed(acc, ref_us, as_of_us, scoring) if total else 0.0
            if favorites and not favorites.isdisjoint(categories(seller_id)):
                score += bonus
            ranked.append((-score, -total, seller_id))
    return {
        "user_id": user_id,
        "as_of": iso_micros(as_of_us),
        "sellers": [
            {
                "seller_id": seller_id,
                "user_seller_score": -neg_score,
                "number_of_interactions": -neg_total,
            }
            for neg_score, neg_total, seller_id in top_k(ranked, k)
        ],
    }
