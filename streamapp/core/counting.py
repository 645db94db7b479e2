"""Counting a batch of interactions into pair state: the hot path's pure core.

`PartitionCount` takes the interactions of one partition in arrival order, a slice at a
time, reads each touched pair once, applies its interactions one by one (PairState.apply:
replays and duplicates are recognised there), and then gives every write the batch makes
(pair values, their chunks, the users' rankings), a few users at a time, plus what to
publish. `count_batch` does both in one call. Any split of a partition's sequence into
batches, and of a batch into slices, gives the same states as one interaction at a time
(tests/unit/test_counting.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from streamapp.core import seller_ranking
from streamapp.core.pair_state import CHUNK_SEP, Interaction, Outcome, PairState, SealedIds

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
    pair_writes: Writes = field(default_factory=dict)  # count_batch's (finish gives them)
    touched: dict[bytes, Touched] = field(default_factory=dict)
    counted: int = 0
    duplicates: int = 0
    replays: int = 0


class PartitionCount:
    """The interactions of one partition in one processing batch, applied a slice at a time
    (`apply`) and written at the end a few users at a time (`finish`). A pair the batch
    touches in several slices is read, decoded, encoded and written once, and its place in
    the user's ranking moves once; the worker yields to the event loop between any two
    calls. A lookup between two calls reads each user as before the batch until that
    user's write, and whole afterwards (all of a user's writes are in one write batch)."""

    def __init__(
        self,
        half_life_s: float,
        dedupe_horizon_s: float,
        weights: Sequence[float],
        on_count: Callable[[Touched, str], None] | None = None,
        sealed: SealedIds | None = None,
    ) -> None:
        self.half_life_s = half_life_s
        self.dedupe_horizon_s = dedupe_horizon_s
        self.weights = weights
        self.on_count = on_count
        # Sealed seen-id chunks kept across batches (the worker's, cleared on assignment).
        self.sealed = sealed
        self._generation = sealed.generation if sealed is not None else 0
        self.result = BatchResult()
        # The database read of the current call: `load_pair` may be a handle the caller
        # must not see kept past its next await (ingest's StateStore.db). In a list the
        # chunk readers share, not on self: a reader that held self would make a cycle,
        # and the batch's states would wait for the garbage collector instead of going
        # when the batch ends (20 % more CPU per interaction, bench.ingest_micro).
        self._load: list[Load] = [_nothing]
        # The pair being applied: one chunk reader serves every pair (PairState.apply reads
        # its chunks before it returns), instead of a reader made for each touched pair.
        self._pair: list[bytes] = [b""]
        self._load_chunk = _chunk_loader(self._load, self._pair)
        self._unfinished: list[list[tuple[bytes, Touched]]] | None = None  # users left to write
        self._fp = seller_ranking.fingerprint(weights, half_life_s)

    @property
    def touched(self) -> dict[bytes, Touched]:
        return self.result.touched

    def apply(self, interactions: Iterable[Interaction], load_pair: Load, now_us: int) -> None:
        """Apply `interactions` (this partition, arrival order, after those applied before).
        `load_pair` reads the stored bytes of a key of the pair table."""
        if self._unfinished is not None:
            raise RuntimeError("apply after finish")
        self._load[0] = load_pair
        try:
            self._apply(interactions, load_pair, now_us)
        finally:
            self._load[0] = _nothing  # the handle is not kept past this call

    def _apply(self, interactions: Iterable[Interaction], load_pair: Load, now_us: int) -> None:
        result, touched = self.result, self.result.touched
        current, load_chunk = self._pair, self._load_chunk
        weights, half_life_s, horizon_s = self.weights, self.half_life_s, self.dedupe_horizon_s
        on_count, sealed = self.on_count, self.sealed
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
                        seller_ranking.order(
                            state.total, state.ref_us, state.acc, weights, half_life_s
                        )
                        if stored
                        else None
                    ),
                )
                if sealed is not None and state.schunks:
                    sealed.fill(key, state)

            current[0] = key
            state = pair.state
            outcome = state.apply(event, now_us, half_life_s, horizon_s, load_chunk)
            if state.sealed_read and sealed is not None:
                sealed.keep(key, state, self._generation)
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

    def finish(self, load_pair: Load, scan_pairs: Scan, max_pairs: int | None = None) -> Writes:
        """The next writes: every touched pair of some users (at least one user, about
        `max_pairs` pairs; all when None) with their chunks and their ranking entries, in one
        dict so that one write batch holds a pair and its place in the ranking (a serving
        process's catch-up never sees one without the other). Empty once all were given.
        `scan_pairs` lists the pair table's keys with a prefix, in order."""
        if self._unfinished is None:
            by_user: dict[str, list[tuple[bytes, Touched]]] = {}
            for key, pair in self.result.touched.items():
                by_user.setdefault(pair.user_id, []).append((key, pair))
            self._unfinished = list(by_user.values())
            self._unfinished.reverse()  # popped from the end: users in first-touched order
        writes: Writes = {}
        taken = 0
        unfinished = self._unfinished
        while unfinished and (max_pairs is None or taken < max_pairs):
            user_pairs = unfinished.pop()
            taken += len(user_pairs)
            for key, pair in user_pairs:
                # Written even when nothing was counted: after a crash the local value may
                # be ahead of its changelog, and re-writing it lets the changelog catch up.
                writes[key] = pair.state.encode()
                chunk_writes = pair.state.chunk_writes
                if chunk_writes:
                    for suffix, value in chunk_writes.items():
                        writes[key + suffix] = value
                    chunk_writes.clear()
            writes.update(
                _ranking_writes(
                    user_pairs[0][1].user_id,
                    [pair for _, pair in user_pairs],
                    self._fp,
                    load_pair,
                    scan_pairs,
                    self.weights,
                    self.half_life_s,
                )
            )
        return writes


def _nothing(key: bytes) -> bytes | None:
    raise RuntimeError("a pair's chunk was read outside PartitionCount.apply")


def _chunk_loader(load: list[Load], pair: list[bytes]) -> Load:
    def load_chunk(suffix: bytes) -> bytes | None:
        return load[0](pair[0] + suffix)

    return load_chunk


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
    """Apply `interactions` (one partition, arrival order) and return every write at once
    (a PartitionCount in one slice). `load_pair` reads the stored bytes of a key of the pair
    table; `scan_pairs` lists its keys with a prefix, in order. `weights` order each user's
    sellers for top-k (seller_ranking: kept in the pair table). `on_count` sees the pair
    right after each interaction it counts or replays (one update per interaction)."""
    count = PartitionCount(half_life_s, dedupe_horizon_s, weights, on_count)
    count.apply(interactions, load_pair, now_us)
    count.result.pair_writes = count.finish(load_pair, scan_pairs)
    return count.result


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
