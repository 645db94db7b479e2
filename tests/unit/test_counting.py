"""Batch counting: any split of a partition's sequence into batches gives the same state
as one interaction at a time, and the same numbers as the brute-force truth."""

from __future__ import annotations

import collections
import itertools
import random
from array import array
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.core import pair_state, seller_ranking
from streamapp.core.counting import PartitionCount, count_batch, pair_key, user_sellers
from streamapp.core.features import feature_vector
from streamapp.core.models import KIND_INDEX
from streamapp.core.pair_state import CHUNK_SEP, Interaction, PairState, SealedIds
from streamapp.core.score import Scoring
from streamapp.core.times import from_micros, to_micros
from tests.truth import Truth, assert_vector_equal
from tests.unit.memory import MemoryTable as Table

WEEK_S = 7 * 86400.0
SCORING = Scoring((3.0, 1.0, 5.0, 0.5), WEEK_S, 1.0)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)
US_PER_S = 1_000_000


def run(batches: list[list[Interaction]]) -> tuple[Table, int]:
    pairs = Table()
    counted = 0
    for batch in batches:
        result = count_batch(
            batch,
            pairs.load,
            NOW_US,
            WEEK_S,
            WEEK_S,
            SCORING.weights,
            scan_pairs=pairs.scan,
        )
        pairs.apply(result.pair_writes)
        counted += result.counted
    return pairs, counted


# One source record: (id number, user, seller, kind, seconds before NOW, source partition).
records = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.sampled_from(["u1", "u2", "u-3"]),
        st.sampled_from(["s1", "s2", "s3", "s-4"]),
        st.sampled_from(list(KIND_INDEX)),
        st.integers(0, 45 * 86400),
        st.integers(0, 2),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(
    records=records,
    resend=st.lists(st.integers(0, 79), max_size=10),
    cuts=st.lists(st.integers(0, 100), max_size=8),
)
def test_any_split_into_batches_gives_the_same_state(records, resend, cuts) -> None:
    truth = Truth()
    stream: list[Interaction] = []
    offsets = [0, 0, 0]
    again = set(resend)
    for i, (n, user, seller, kind, ago, partition) in enumerate(records):
        on = from_micros(to_micros(NOW - timedelta(seconds=ago)))
        iid = f"i{n}{user}{seller}"  # the truth dedupes ids globally, the contract per pair
        item = Interaction(iid, user, seller, KIND_INDEX[kind], to_micros(on), partition, 0)
        item = item._replace(src_offset=offsets[partition])
        offsets[partition] += 1
        truth.interact(item.id, user, seller, kind, on)
        stream.append(item)
        if i in again:  # re-sent by a replayed re-keying: same source offset, new position
            stream.append(item)
    one_by_one = run([[item] for item in stream])
    bounds = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    split = run([stream[a:b] for a, b in itertools.pairwise(bounds)])
    assert split[0] == one_by_one[0]
    assert split[1] == one_by_one[1] == sum(len(v) for v in truth.pairs.values())
    for (user, seller), _ in truth.pairs.items():
        raw = split[0][pair_key(user, seller)]
        got = feature_vector(user, seller, PairState.decode(raw), (), (), NOW_US, SCORING)
        assert_vector_equal(got, truth.vector(user, seller, NOW))
        listed = user_sellers(user, split[0].scan)
        assert listed == sorted(s for u, s in truth.pairs if u == user)


def in_batches(records: list[tuple], cuts: list[int]) -> list[list[Interaction]]:
    """The drawn records as interactions (source offsets in order per partition), cut into
    batches at `cuts`."""
    offsets = [0, 0, 0]
    stream: list[Interaction] = []
    for n, user, seller, kind, ago, partition in records:
        on_us = to_micros(from_micros(NOW_US - ago * US_PER_S))
        stream.append(
            Interaction(
                f"i{n}", user, seller, KIND_INDEX[kind], on_us, partition, offsets[partition]
            )
        )
        offsets[partition] += 1
    bounds = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def run_sliced(batches: list[list[Interaction]], slice_n: int, finish_n: int) -> Table:
    """As the worker counts a batch: applied `slice_n` at a time, written at most about
    `finish_n` pairs at a time; checks that the table does not change before the writes."""
    pairs = Table()
    for batch in batches:
        count = PartitionCount(WEEK_S, WEEK_S, SCORING.weights)
        before = dict(pairs)
        for start in range(0, len(batch), slice_n):
            count.apply(batch[start : start + slice_n], pairs.load, NOW_US)
            assert pairs == before  # a lookup between two slices reads the state before
        written: set[str] = set()
        while writes := count.finish(pairs.load, pairs.scan, finish_n):
            users = {p.user_id for k, p in count.touched.items() if k in writes}
            assert users and not users & written  # whole users, each once
            written |= users
            pairs.apply(writes)
        assert written == {p.user_id for p in count.touched.values()}
        assert count.finish(pairs.load, pairs.scan, finish_n) == {}
    return pairs


@settings(max_examples=150, deadline=None)
@given(
    records=records,
    cuts=st.lists(st.integers(0, 100), max_size=4),
    slice_n=st.integers(1, 20),
    finish_n=st.integers(1, 6),
)
def test_slices_and_partial_writes_give_what_one_call_gives(
    records, cuts, slice_n, finish_n
) -> None:
    """ingest.count_into_state's way (PartitionCount: slices, then a few users' writes at a
    time, each in its own write batch) leaves the table count_batch leaves, on any split."""
    batches = in_batches(records, cuts)
    whole, _ = run(batches)
    assert run_sliced(batches, slice_n, finish_n) == whole


@settings(max_examples=150, deadline=None)
@given(
    records=records,
    cuts=st.lists(st.integers(0, 100), max_size=4),
    finish_n=st.integers(1, 4),
    crash_after=st.lists(st.integers(0, 6), min_size=1, max_size=5),
)
def test_a_crash_between_two_write_batches_and_the_replay_give_what_one_call_gives(
    records, cuts, finish_n, crash_after
) -> None:
    """The worker stops after some of a batch's write batches (a SIGKILL; nothing of the
    batch was acked) and the batch is read again and counted in full: the pairs already
    written are recognised as replays, the others counted, and the table, the users'
    rankings included, is the one an uninterrupted count leaves."""
    batches = in_batches(records, cuts)
    whole, _ = run(batches)
    pairs = Table()
    crashes = iter(crash_after)
    for batch in batches:
        stop_after = next(crashes, None)  # write batches that land before the crash
        count = PartitionCount(WEEK_S, WEEK_S, SCORING.weights)
        count.apply(batch, pairs.load, NOW_US)
        written = 0
        while (stop_after is None or written < stop_after) and (
            writes := count.finish(pairs.load, pairs.scan, finish_n)
        ):
            pairs.apply(writes)
            written += 1
        if stop_after is not None:  # the replay, in full
            count = PartitionCount(WEEK_S, WEEK_S, SCORING.weights)
            count.apply(batch, pairs.load, NOW_US)
            while writes := count.finish(pairs.load, pairs.scan, finish_n):
                pairs.apply(writes)
    assert pairs == whole


def test_a_hot_pairs_chunks_are_read_within_a_slice_only() -> None:
    """A pair that spilled into chunks reads them through the database of the current
    apply; a chunk read outside one is a bug (the handle may be closed by then)."""
    items = [Interaction(f"h{n}", "u", "s", 1, NOW_US - n * US_PER_S, 0, n) for n in range(2_500)]
    pairs, _ = run([items])
    count = PartitionCount(WEEK_S, WEEK_S, SCORING.weights)
    late = [Interaction("late", "u", "s", 1, NOW_US - 2_600 * US_PER_S, 0, 2_500)]
    reads: list[bytes] = []

    def load(key: bytes) -> bytes | None:
        reads.append(key)
        return pairs.load(key)

    count.apply(late, load, NOW_US)  # an old event time: lands in the oldest time chunk
    assert any(CHUNK_SEP in key for key in reads)
    loader = count._load_chunk  # what the pair's state was handed
    with pytest.raises(RuntimeError, match=r"outside PartitionCount\.apply"):
        loader(CHUNK_SEP + b"t1")


def test_hot_pairs_in_one_slice_read_their_own_chunks() -> None:
    """One chunk reader serves the pairs of a slice in turn: interleaved old events of two
    hot pairs of one user (and one of another user) each read their own pair's chunks and
    count as if applied one at a time."""
    hot = [("u", "s"), ("u", "t"), ("v", "s")]
    history = [
        # Five time chunks each, of times the other pairs do not have.
        Interaction(f"h{u}{s}{n}", u, s, 1, NOW_US - n * US_PER_S - i, 0, i * 6_000 + n)
        for i, (u, s) in enumerate(hot)
        for n in range(6_000)
    ]
    # Each round goes deeper into the history, so each pair reads a chunk it has not read.
    late = [
        Interaction(
            f"late{u}{s}{n}", u, s, n % 4, NOW_US - (5_900 - 1_100 * n) * US_PER_S, 1, 10 * n + i
        )
        for n in range(5)
        for i, (u, s) in enumerate(hot)
    ]
    one_by_one, _ = run([history] + [[event] for event in late])
    pairs, _ = run([history])
    reads: list[bytes] = []

    def load(key: bytes) -> bytes | None:
        reads.append(key)
        return pairs.load(key)

    count = PartitionCount(WEEK_S, WEEK_S, SCORING.weights)
    count.apply(late, load, NOW_US)
    while writes := count.finish(pairs.load, pairs.scan, 2):
        pairs.apply(writes)
    assert pairs == one_by_one
    chunk_reads = collections.Counter(key.split(CHUNK_SEP)[0] for key in reads if CHUNK_SEP in key)
    # Each pair read its own chunks, as many as the others: its seen ids' and, round after
    # round, time chunks it had not read before.
    assert set(chunk_reads) == {pair_key(u, s) for u, s in hot}
    assert len(set(chunk_reads.values())) == 1 and min(chunk_reads.values()) > 6


def test_a_users_sellers_are_the_keys_of_its_pairs_alone() -> None:
    """Not a chunk of a hot pair, not the user's ranking, not another user whose id starts
    with this one's: users "u", "u1" and "u-1", sellers of every length."""
    sellers = {"u": ["s", "s1", "s-2", "x" * 300], "u1": ["s"], "u-1": ["s9"]}
    items = [
        Interaction(f"i{n}{u}{s}", u, s, 0, NOW_US - n * US_PER_S, 0, n)
        for u, ids in sellers.items()
        for s in ids
        for n in range(3)
    ]
    # A hot pair: more event times than a value holds inline, so it spills into chunks.
    items += [Interaction(f"h{n}", "u", "s", 1, NOW_US - n * US_PER_S, 1, n) for n in range(2_500)]
    pairs, _ = run([items[start : start + 500] for start in range(0, len(items), 500)])
    assert any(k.startswith(pair_key("u", "s") + CHUNK_SEP) for k in pairs)  # chunks exist
    fp = seller_ranking.fingerprint(SCORING.weights, WEEK_S)
    assert pairs.load(seller_ranking.mark(b"u", fp)) is not None  # and the ranking
    for user, ids in sellers.items():
        assert user_sellers(user, pairs.scan) == sorted(ids)
    assert user_sellers("u2", pairs.scan) == []


# One pair's record: (id number, pair, kind, seconds before the batch's clock).
hot_records = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.sampled_from([("u1", "s1"), ("u1", "s2"), ("u2", "s1")]),
        st.sampled_from(list(KIND_INDEX)),
        st.integers(0, 40 * 86400),
    ),
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(
    records=hot_records,
    cuts=st.lists(st.integers(0, 150), max_size=10),
    steps_s=st.lists(
        st.sampled_from([0, 600, 7200, 40_000, 80_000, 86_400, 90_000, 2 * 86400]),
        min_size=10,
        max_size=10,
    ),
    crash_after=st.lists(st.integers(0, 3) | st.none(), min_size=10, max_size=10),
    clear_at=st.lists(st.integers(0, 150), max_size=3),
    max_ids=st.integers(0, 40),
)
def test_sealed_ids_kept_across_batches_change_nothing(
    records, cuts, steps_s, crash_after, clear_at, max_ids
) -> None:
    """The worker keeps sealed seen-id chunks across batches (pair_state.SealedIds). With
    chunks of a few entries, a clock that moves on between batches (ids expire from the
    one-day horizon, times from the 30 days), crashes between write batches and their
    replays, clears in the middle of a batch and an LRU bound that evicts: every outcome
    and the table are those of counting without it. And an id counted twice was first
    counted at least the horizon before."""
    horizon_s = 86400.0
    clock = [NOW_US + sum(steps_s[: i + 1]) * US_PER_S for i in range(len(steps_s))]
    items = [
        Interaction(f"i{n}", user, seller, KIND_INDEX[kind], 0, 0, offset)
        for offset, (n, (user, seller), kind, ago) in enumerate(records)
    ]
    bounds = sorted({0, len(items), *(c for c in cuts if c <= len(items))})
    batches = [(a, b) for a, b in itertools.pairwise(bounds)][: len(clock)]

    def count_all(sealed: SealedIds | None) -> tuple[Table, list[tuple[int, int, int]]]:
        pairs, outcomes = Table(), []
        counted_at: dict[tuple[str, str, str], int] = {}
        for i, (a, b) in enumerate(batches):
            now = clock[i]
            batch = [
                item._replace(on_us=now - records[a + j][3] * US_PER_S)
                for j, item in enumerate(items[a:b])
            ]
            for attempt in ("crashed", "whole") if crash_after[i] is not None else ("whole",):
                count = PartitionCount(horizon_s, horizon_s, SCORING.weights, sealed=sealed)
                for j, item in enumerate(batch):
                    if sealed is not None and a + j in clear_at:
                        sealed.clear()
                    before = count.result.counted
                    count.apply([item], pairs.load, now)
                    key = (item.user_id, item.seller_id, item.id)
                    if count.result.counted > before and attempt == "whole":
                        if key in counted_at:  # counted again: only once the horizon passed
                            assert now - counted_at[key] >= horizon_s * US_PER_S, key
                        counted_at[key] = now
                written = 0
                while (attempt == "whole" or written < crash_after[i]) and (
                    writes := count.finish(pairs.load, pairs.scan, 1)
                ):
                    pairs.apply(writes)
                    written += 1
                r = count.result
                outcomes.append((r.counted, r.duplicates, r.replays))
        return pairs, outcomes

    with small_chunks():
        plain = count_all(None)
        sealed = SealedIds(max_ids)
        assert count_all(sealed) == plain
        assert sealed._ids <= max_ids


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("keep_sealed", [False, True])
def test_an_id_sent_again_within_the_horizon_is_a_duplicate(seed: int, keep_sealed: bool) -> None:
    """Hot pairs (chunks of a few entries) counted batch after batch while the clock moves
    on by seconds to a day: ids sent again within the horizon of their first count, from
    inline ids, sealed chunks, chunks merged into and chunks kept across batches (or not),
    are all duplicates; ids never sent before all count; so the pair's count is exact."""
    rng = random.Random(seed)
    horizon_s = 86400.0
    sealed = SealedIds(rng.choice([0, 20, 10_000])) if keep_sealed else None
    pairs = Table()
    hot = [("u1", "s1"), ("u1", "s2"), ("u2", "s1")]
    counted_at: dict[tuple[str, str, str], int] = {}
    now, offset, fresh = NOW_US, 0, 0
    with small_chunks():
        for _ in range(60):
            now += rng.choice([0, 1, 600, 7200, 40_000, 80_000]) * US_PER_S
            live = [k for k, t in counted_at.items() if now - t < horizon_s * US_PER_S]
            batch, want = [], collections.Counter()
            for _ in range(rng.randrange(1, 12)):
                if live and rng.random() < 0.4:
                    user, seller, iid = rng.choice(live)
                    want["duplicates"] += 1
                else:
                    (user, seller), iid = rng.choice(hot), f"n{fresh}"
                    fresh += 1
                    counted_at[user, seller, iid] = now
                    live.append((user, seller, iid))
                    want["counted"] += 1
                on = now - rng.randrange(40 * 86400) * US_PER_S
                batch.append(Interaction(iid, user, seller, 1, on, 0, offset))
                offset += 1
            count = PartitionCount(horizon_s, horizon_s, SCORING.weights, sealed=sealed)
            count.apply(batch, pairs.load, now)
            while writes := count.finish(pairs.load, pairs.scan, 2):
                pairs.apply(writes)
            got = count.result
            assert (got.counted, got.duplicates) == (want["counted"], want["duplicates"])
    for user, seller in hot:
        total = sum(1 for u, s, _ in counted_at if (u, s) == (user, seller))
        assert PairState.decode(pairs[pair_key(user, seller)]).total == total


def test_sealed_ids_give_a_chunk_only_as_it_was_read() -> None:
    """A chunk is known by its whole entry: one merged into since (another count), or read
    before a clear, is read from the table again."""
    sealed = SealedIds()
    hashes = array("Q", [1, 2, 3])
    state = PairState(schunks=[[5, 100, 3]])
    state.sealed_read.append((5, 100, 3, hashes))
    sealed.keep(b"p", state, sealed.generation)
    assert not state.sealed_read and len(sealed) == 1
    fresh = PairState(schunks=[[5, 100, 3]])
    sealed.fill(b"p", fresh)
    assert fresh.sealed_seen == {5: hashes}
    for other in (PairState(schunks=[[5, 100, 4]]), PairState(schunks=[[5, 101, 3]])):
        sealed.fill(b"p", other)
        assert other.sealed_seen == {}
    sealed.fill(b"q", other := PairState(schunks=[[5, 100, 3]]))  # another pair's chunk 5
    assert other.sealed_seen == {}
    began = sealed.generation
    sealed.clear()
    assert len(sealed) == 0
    state.sealed_read.append((6, 100, 3, hashes))
    sealed.keep(b"p", state, began)  # read by a batch that began before the clear
    assert len(sealed) == 0 and not state.sealed_read


def small_chunks() -> AbstractContextManager[object]:
    """Chunks of a few entries (as tests/unit/test_pair_state.py's)."""
    return mock.patch.multiple(pair_state, INLINE=3, CHUNK_MAX=10)
