"""Counting a batch of interactions into pair state: the hot path's pure core.

`count_batch` takes the interactions of one partition in arrival order, reads each touched
pair once, applies its interactions one by one (PairState.apply: replays and duplicates
are recognised there), and returns every write the batch makes (pair values, their
chunks, the users' rankings) plus what to publish. Any split of a partition's
sequence into batches gives the same states as one interaction at a time
(tests/unit/test_counting.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from streamapp.core import seller_ranking
from streamapp.core.pair_state import CHUNK_SEP, Interaction, Outcome, PairState

PAIR_SEPARATOR = "\x1f"  # ids never contain control characters (models.EntityId)

Load = Callable[[bytes], bytes | None]
Scan = Callable[[bytes], Iterable[bytes]]
Writes = dict[bytes, bytes | None]


def pair_key(user_id: str, seller_id: str) -> bytes:
    return f"{user_id}{PAIR_SEPARATOR}{seller_id}".encode()


def user_sellers(user_id: str, scan_pairs: Scan) -> list[str]:
    """The user's sellers, in key order: the keys of the user's pairs in the pair table
    (`scan_pairs` lists the keys with a prefix), without their chunk records. No index of
    its own: the pair table's key range already is one, kept by the writes of the pairs
    themselves."""
    prefix = pair_key(user_id, "")  # every pair key of the user starts so
    n = len(prefix)
    return [key[n:].decode() for key in scan_pairs(prefix) if CHUNK_SEP not in key[n:]]


def _chunk_loader(load_pair: Load, key: bytes) -> Load:
    def load_chunk(suffix: bytes) -> bytes | None:
        return load_pair(key + suffix)

    return load_chunk


@dataclass(slots=True)
class Touched:
    """A pair changed (or re-applied) by the batch."""

    user_id: str
    seller_id: str
    state: PairState
    # The interactions an update of this pair covers, in order: those counted now, and
    # those replayed after a crash (their first update may never have left: at least once).
    covered_ids: list[str] = field(default_factory=list)
    replayed: int = 0
    order_before: bytes | None = None  # its place in the user's ranking (None: a new pair)


@dataclass(slots=True)
class BatchResult:
    pair_writes: Writes = field(default_factory=dict)
    touched: dict[bytes, Touched] = field(default_factory=dict)
    counted: int = 0
    duplicates: int = 0
    replays: int = 0


def count_batch(
    interactions: Iterable[Interaction],
    load_pair: Load,
    now_us: int,
    half_life_s: float,
    dedupe_horizon_s: float,
    weights: Sequence[float],
    on_count: Callable[[Touched, str], None] | None = None,
    *,
    scan_pairs: Scan,
) -> BatchResult:
    """Apply `interactions` (one partition, arrival order). `load_pair` reads the stored
    bytes of a key of the pair table; `scan_pairs` lists its keys with a prefix, in order.
    `weights` order each user's sellers for top-k (seller_ranking: kept in the pair table).
    `on_count` sees the pair right after each interaction it counts or replays (one update
    per interaction)."""
    result = BatchResult()
    touched = result.touched
    # Each touched pair's chunk reader, for this call only: `load_pair` may be a database
    # handle the caller must not see kept past its next await (ingest's StateStore.db).
    chunk_loaders: dict[bytes, Load] = {}
    for event in interactions:
        key = pair_key(event.user_id, event.seller_id)
        pair = touched.get(key)
        if pair is None:
            stored = load_pair(key)
            state = PairState.decode(stored) if stored else PairState()
            pair = touched[key] = Touched(
                event.user_id,
                event.seller_id,
                state,
                order_before=(  # as order_of(stored): the state is as decoded yet
                    seller_ranking.order(state.total, state.ref_us, state.acc, weights, half_life_s)
                    if stored
                    else None
                ),
            )
            chunk_loaders[key] = _chunk_loader(load_pair, key)

        outcome = pair.state.apply(event, now_us, half_life_s, dedupe_horizon_s, chunk_loaders[key])
        if outcome is Outcome.DUPLICATE:
            result.duplicates += 1
            continue
        if outcome is Outcome.COUNTED:
            result.counted += 1
        else:
            result.replays += 1
            pair.replayed += 1
        pair.covered_ids.append(event.id)
        if on_count is not None:
            on_count(pair, event.id)

    for key, pair in touched.items():
        # Written even when nothing was counted: after a crash the local value may be ahead
        # of its changelog, and re-writing it lets the changelog catch up.
        result.pair_writes[key] = pair.state.encode()
        for suffix, value in pair.state.chunk_writes.items():
            result.pair_writes[key + suffix] = value
        pair.state.chunk_writes.clear()
    by_user: dict[str, list[Touched]] = {}
    for pair in touched.values():
        by_user.setdefault(pair.user_id, []).append(pair)
    fp = seller_ranking.fingerprint(weights, half_life_s)
    for user_id, user_pairs in by_user.items():
        # In the pair table, so that one write batch holds a pair and its place in the
        # ranking: a serving process's catch-up never sees one without the other.
        result.pair_writes.update(
            _ranking_writes(user_id, user_pairs, fp, load_pair, scan_pairs, weights, half_life_s)
        )
    return result


def _ranking_writes(
    user_id: str,
    user_pairs: list[Touched],
    fp: bytes,
    load_pair: Load,
    scan_pairs: Scan,
    weights: Sequence[float],
    half_life_s: float,
) -> Writes:
    user_key = user_id.encode()
    after = {
        p.seller_id: seller_ranking.order(
            p.state.total, p.state.ref_us, p.state.acc, weights, half_life_s
        )
        for p in user_pairs
    }
    if load_pair(seller_ranking.mark(user_key, fp)) is not None:
        return seller_ranking.moves(
            user_key,
            fp,
            ((p.seller_id, p.order_before, after[p.seller_id], p.replayed > 0) for p in user_pairs),
        )
    # No complete index under these weights yet: write every seller's entry once (the
    # stored pairs as they were before this batch, and the batch's own).
    orders = dict(after)
    for seller_id in user_sellers(user_id, scan_pairs):
        if seller_id not in orders:
            raw = load_pair(pair_key(user_id, seller_id))
            if raw:
                orders[seller_id] = seller_ranking.order_of(raw, weights, half_life_s)
    # Whatever the user's ranking held (other weights' entries and marks, entries a crash
    # left behind) goes: a mark of earlier weights must not come back to life.
    stale = scan_pairs(seller_ranking.user_prefix(user_key))
    return seller_ranking.rebuild(user_key, fp, orders.items(), stale)
