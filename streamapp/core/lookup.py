"""The answers of the lookup endpoints, computed from state: no faust, no HTTP.

The worker's views (worker/views.py) read its own tables; a serving process (serving/) reads the
same RocksDB databases as a secondary instance. Both hand their readers to the functions
here, so the two answer with the same code and the same numbers.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from streamapp.core import seller_ranking
from streamapp.core.counting import pair_key, user_sellers
from streamapp.core.features import text_parts, vector_text
from streamapp.core.pair_state import PairState, summary
from streamapp.core.score import Ranked, Scoring, decayed, top_k
from streamapp.core.times import iso_micros
from streamapp.core.vector_memo import VectorMemo

# Pairs computed between two turns of the event loop (at most 2 x SLICE - 1: a turn is
# given between two partitions' slices once SLICE pairs were computed): a bulk query of
# 1,000 pairs gives ingest (in the worker) and other requests a turn every millisecond or
# so, and a bulk(100) spread over 8 partitions takes one turn, not 8.
SLICE = 64


class PartitionReader(Protocol):
    """A table's partition databases: None / [None, ...] where a key (or the partition) is
    not here."""

    def read(self, partition: int, key: bytes) -> bytes | None: ...
    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]: ...
    def scan(self, partition: int, prefix: bytes) -> Iterator[bytes]: ...


class CategoryReader(Protocol):
    def categories(self, entity_id: str) -> frozenset[str]: ...


@dataclass(frozen=True)
class Sources:
    pairs: PartitionReader
    users: CategoryReader
    sellers: CategoryReader
    home_partition: Callable[[str], int]
    scoring: Scoring
    # The recently asked pairs' vectors, less what moves with as_of (vector_memo.py).
    memo: VectorMemo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "memo", VectorMemo(self.scoring))


async def vector_texts(src: Sources, pairs: list[tuple[str, str]], as_of_us: int) -> list[bytes]:
    """Feature vectors as JSON texts, one per input pair, at one as_of: the pairs of a
    partition read with multi-gets, each profile read once. Texts, not dicts: the answer
    of a lookup is these texts joined (features.vector_text)."""
    as_of_json = orjson.dumps(iso_micros(as_of_us))
    home_partition = src.home_partition
    by_partition: dict[int, list[tuple[str, str]]] = {}
    for pair in dict.fromkeys(pairs):
        by_partition.setdefault(home_partition(pair[0]), []).append(pair)
    favorites: dict[str, frozenset[str]] = {}
    done: dict[tuple[str, str], bytes] = {}
    slices = [
        (partition, whole[i : i + SLICE])
        for partition, whole in by_partition.items()
        for i in range(0, len(whole), SLICE)
    ]
    read, read_many = src.pairs.read, src.pairs.read_many
    user_categories, seller_categories = src.users.categories, src.sellers.categories
    memo, scoring = src.memo, src.scoring

    def build_chunked(
        partition: int,
        pair: tuple[str, str],
        key: bytes,
        raw: bytes,
        fav: frozenset[str],
        cats: frozenset[str],
    ) -> bytes:
        """A hot pair's vector: its windows read chunks, which the memo does not keep."""
        user_id, seller_id = pair

        def load(suffix: bytes) -> bytes | None:
            return read(partition, key + suffix)

        state = PairState.decode_for_lookup(raw)
        parts = text_parts(user_id, seller_id, state, fav, cats, as_of_us, scoring, load)
        return vector_text(*parts, as_of_json)

    since_turn = 0
    for partition, group in slices:
        if since_turn >= SLICE:
            await asyncio.sleep(0)  # someone else's turn
            since_turn = 0
        since_turn += len(group)
        keys = [pair_key(u, s) for u, s in group]
        raws = read_many(partition, keys)
        favs = []
        for user_id, _ in group:
            fav = favorites.get(user_id)
            if fav is None:
                fav = favorites[user_id] = user_categories(user_id)
            favs.append(fav)
        cats = [seller_categories(seller_id) for _, seller_id in group]
        texts = memo.texts(group, keys, raws, favs, cats, as_of_us, as_of_json)
        for n, text in enumerate(texts):
            pair = group[n]
            if text is None:
                text = build_chunked(partition, pair, keys[n], raws[n], favs[n], cats[n])  # type: ignore[arg-type]
            done[pair] = text
    return [done[pair] for pair in pairs]


def results_text(texts: list[bytes]) -> bytes:
    """A bulk answer, {"results": [...]}, from its vectors' JSON texts: joined, not encoded
    again."""
    return b'{"results":[' + b",".join(texts) + b"]}"


async def vectors(
    src: Sources, pairs: list[tuple[str, str]], as_of_us: int
) -> list[dict[str, Any]]:
    """The same vectors as dicts (tests, tools)."""
    return [orjson.loads(text) for text in await vector_texts(src, pairs, as_of_us)]


# Index entries a top-k walk reads in one go, without yielding to the event loop (so ingest
# cannot move an entry past it mid-walk). A walk that needs more (the favorites bonus or
# ties outweigh the spread of decayed scores) ranks every seller instead, as without index.
WALK_BUDGET = 2048


async def top_sellers(src: Sources, user_id: str, k: int, as_of_us: int) -> dict[str, Any]:
    """The user's k best sellers: a walk of the user's ranking from the best
    (seller_ranking), or, where that has no complete index, every seller ranked."""
    partition = src.home_partition(user_id)
    user_key = user_id.encode()
    scoring = src.scoring
    fp = seller_ranking.fingerprint(scoring.weights, scoring.half_life_s)
    score = _scorer(src, user_id, as_of_us)
    best = None
    if src.pairs.read(partition, seller_ranking.mark(user_key, fp)) is not None:
        best = _walk(src, partition, user_id, fp, k, as_of_us, score)
    if best is None:
        best = top_k(await _rank_all(src, partition, user_id, score), k)
    return {
        "user_id": user_id,
        "as_of": iso_micros(as_of_us),
        "sellers": [
            {
                "seller_id": seller_id,
                "user_seller_score": -neg_score,
                "number_of_interactions": -neg_total,
            }
            for neg_score, neg_total, seller_id in best
        ],
    }


Scorer = Callable[[str, bytes], Ranked]


def _scorer(src: Sources, user_id: str, as_of_us: int) -> Scorer:
    """Scores a seller from its pair's stored header alone (no full decode)."""
    favorites = src.users.categories(user_id)
    categories = src.sellers.categories
    scoring = src.scoring
    bonus = scoring.favorites_bonus

    def score(seller_id: str, raw: bytes) -> Ranked:
        total, ref_us, acc = summary(raw)
        value = decayed(acc, ref_us, as_of_us, scoring) if total else 0.0
        if favorites and not favorites.isdisjoint(categories(seller_id)):
            value += bonus
        return (-value, -total, seller_id)

    return score


async def _rank_all(src: Sources, partition: int, user_id: str, score: Scorer) -> list[Ranked]:
    """Every seller of the user, ranked: reads each pair header once."""

    def scan(prefix: bytes) -> Iterator[bytes]:
        return src.pairs.scan(partition, prefix)

    candidates = user_sellers(user_id, scan)
    ranked: list[Ranked] = []
    step = 16 * SLICE  # a header costs far less than a vector
    for start in range(0, len(candidates), step):
        if start:
            await asyncio.sleep(0)  # a user may have 100,000 sellers
        part = candidates[start : start + step]
        keys = [pair_key(user_id, s) for s in part]
        for seller_id, raw in zip(part, src.pairs.read_many(partition, keys), strict=True):
            if raw:
                ranked.append(score(seller_id, raw))
    return ranked


class _Worst:
    """A seller id that sorts backwards: in a min-heap of (score, total, _Worst(id)) the
    top is the worst of the kept, as Ranked orders them (higher id = worse)."""

    __slots__ = ("id",)

    def __init__(self, seller_id: str) -> None:
        self.id = seller_id

    def __lt__(self, other: _Worst) -> bool:
        return self.id > other.id


def _walk(
    src: Sources,
    partition: int,
    user_id: str,
    fp: bytes,
    k: int,
    as_of_us: int,
    score: Scorer,
) -> list[Ranked] | None:
    """The k best by walking the user's ranking from the best, stopping where no seller
    left can enter: the entry's bound (its K at `as_of`) plus the favorites bonus, if the
    bonus is positive, is below the k-th score. Sellers whose own bound (the bonus only
    where their categories match) cannot enter are passed over without reading their pair.
    None when the walk would take more than WALK_BUDGET entries."""
    prefix = seller_ranking.mark(user_id.encode(), fp)
    n = len(prefix)
    scoring = src.scoring
    half_life_s, bonus = scoring.half_life_s, scoring.favorites_bonus
    favorites = src.users.categories(user_id)
    categories = src.sellers.categories
    lift = max(bonus, 0.0) if favorites else 0.0
    kept: list[tuple[float, int, _Worst]] = []  # min-heap of the k best so far
    seen: set[str] = set()
    pending: list[str] = []

    def read(sellers: list[str]) -> None:
        keys = [pair_key(user_id, s) for s in sellers]
        for seller_id, raw in zip(sellers, src.pairs.read_many(partition, keys), strict=True):
            if not raw:
                continue
            neg_value, neg_total, _ = score(seller_id, raw)
            item = (-neg_value, -neg_total, _Worst(seller_id))
            if len(kept) < k:
                heapq.heappush(kept, item)
            elif kept[0] < item:
                heapq.heapreplace(kept, item)

    walked = 0
    for key in src.pairs.scan(partition, prefix):
        if len(key) == n:
            continue  # the mark itself
        walked += 1
        if walked > WALK_BUDGET:
            return None
        order, seller_id = seller_ranking.parse_entry(n, key)
        if seller_id in seen:
            continue  # an entry a crash left behind: the pair is read once
        seen.add(seller_id)
        if len(kept) < k:
            pending.append(seller_id)
            if len(pending) + len(kept) >= k:
                read(pending)
                pending = []
            continue
        threshold = kept[0][0]
        ceiling = seller_ranking.bound(order, as_of_us, half_life_s)
        if ceiling + lift < threshold:
            break  # nobody further down can enter
        matches = bool(favorites) and not favorites.isdisjoint(categories(seller_id))
        if ceiling + (bonus if matches else 0.0) < threshold:
            continue
        read([seller_id])
    read(pending)
    return sorted((-value, -total, w.id) for value, total, w in kept)
