"""Pair state against the brute-force truth model, including property-based tests."""

import math
import struct
from array import array
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.core import pair_state
from streamapp.core.features import category_features, feature_vector
from streamapp.core.models import KIND_INDEX
from streamapp.core.pair_state import (
    CHUNK_MAX,
    INLINE,
    W1,
    W7,
    W30,
    Interaction,
    Outcome,
    PairState,
    few_window_counts,
    inline_window_counts,
    summary,
)
from streamapp.core.score import Scoring, top_k
from streamapp.core.times import from_micros, to_micros
from tests.truth import KINDS, Truth, assert_vector_equal
from tests.unit.memory import MemoryTable

WEEK_S = 7 * 86400.0
SCORING = Scoring((3.0, 1.0, 5.0, 0.5), WEEK_S, 1.0)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)


class Chunks(MemoryTable):
    """A pair's spilled chunks, as the table would hold them."""

    def commit(self, state: PairState) -> None:
        self.apply(state.chunk_writes)
        state.chunk_writes.clear()


def small_chunks(inline: int = 3, chunk_max: int = 10) -> AbstractContextManager[object]:
    """Chunks of a few entries: a few dozen interactions of one pair spill, merge, split and
    expire as many thousands do."""
    return mock.patch.multiple(pair_state, INLINE=inline, CHUNK_MAX=chunk_max)


def event(iid: str, kind: str, on: datetime, offset: int = 0, partition: int = 0) -> Interaction:
    return Interaction(iid, "u", "s", KIND_INDEX[kind], to_micros(on), partition, offset)


def apply(
    state: PairState,
    ev: Interaction,
    now_us: int = NOW_US,
    horizon_s: float = WEEK_S,
    chunks: Chunks | None = None,
) -> Outcome:
    chunks = Chunks() if chunks is None else chunks
    outcome = state.apply(ev, now_us, WEEK_S, horizon_s, chunks.load)
    chunks.commit(state)
    return outcome


def vector(
    state: PairState,
    as_of: datetime,
    fav: set[str] = frozenset(),
    cats: set[str] = frozenset(),
    chunks: Chunks | None = None,
) -> dict:
    load = (chunks or Chunks()).load
    return feature_vector("u", "s", state, fav, cats, to_micros(as_of), SCORING, load)


def test_counts_dedupe_and_replay() -> None:
    state = PairState()
    assert apply(state, event("a", "LIKE", NOW, 0)) is Outcome.COUNTED
    assert apply(state, event("a", "LIKE", NOW, 1)) is Outcome.DUPLICATE
    assert apply(state, event("b", "VIEW", NOW, 1)) is Outcome.REPLAY
    assert apply(state, event("b", "VIEW", NOW, 2)) is Outcome.COUNTED
    # Offsets are per source partition: offset 0 of another partition is new.
    assert apply(state, event("c", "VIEW", NOW, 0, partition=3)) is Outcome.COUNTED
    assert state.counts == [1, 2, 0, 0]


def test_dedupe_horizon_runs_on_the_wall_clock_not_record_time() -> None:
    state = PairState()
    old = NOW - timedelta(days=40)  # a backfill: its own timestamps are weeks old
    assert apply(state, event("a", "LIKE", old, 0)) is Outcome.COUNTED
    assert apply(state, event("b", "LIKE", NOW, 1)) is Outcome.COUNTED
    # Still within 7 days of when "a" was first counted: a duplicate, however old it is.
    six_days = NOW_US + 6 * 86_400 * 1_000_000
    assert apply(state, event("a", "LIKE", old, 2), now_us=six_days) is Outcome.DUPLICATE
    eight_days = NOW_US + 8 * 86_400 * 1_000_000
    assert apply(state, event("a", "LIKE", old, 3), now_us=eight_days) is Outcome.COUNTED


def test_binary_roundtrip_keeps_everything() -> None:
    state = PairState()
    chunks = Chunks()
    for i in range(3 * INLINE):
        apply(
            state, event(f"i{i}", "PURCHASE", NOW - timedelta(minutes=i), i, i % 3), chunks=chunks
        )
    again = PairState.decode(state.encode())
    names = ("counts", "first_us", "last_us", "ref_us", "acc", "offsets", "times", "seen_ids")
    for name in (*names, "seen_at"):
        assert getattr(again, name) == getattr(state, name), name
    assert again.tchunks == state.tchunks and again.schunks == state.schunks
    assert summary(state.encode()).total == 3 * INLINE


def test_hot_pair_stays_bounded_and_exact() -> None:
    """Thousands of interactions of one pair (long ids, out-of-order times): the stored
    value and every chunk stay small, and windows, counts and dedupe stay exact."""
    state = PairState()
    chunks = Chunks()
    truth = Truth()
    n = 6 * CHUNK_MAX
    for i in range(n):
        shift = -((i * 7919) % (40 * 86400))  # spread over 40 days, out of order
        on = from_micros(to_micros(NOW + timedelta(seconds=shift)))
        iid = f"{i:0>250}"
        truth.interact(iid, "u", "s", "VIEW", on)
        assert apply(state, event(iid, "VIEW", on, i), chunks=chunks) is Outcome.COUNTED
    # A producer retry of an early id is still caught (its hash sits in a sealed chunk).
    assert apply(state, event(f"{3:0>250}", "VIEW", NOW, n + 1), chunks=chunks) is Outcome.DUPLICATE
    assert len(state.encode()) < 64 * 1024
    assert max(len(v) for v in chunks.values()) <= 8 * (CHUNK_MAX + 1)
    for fresh in (PairState.decode(state.encode()), PairState.decode_for_lookup(state.encode())):
        for shift in (0.0, 0.5, 3.0):  # as_of never precedes processing (retention: 30 days)
            as_of = from_micros(to_micros(NOW + timedelta(days=shift)))
            got = vector(fresh, as_of, chunks=chunks)  # a lookup reads chunks as it needs
            assert_vector_equal(got, truth.vector("u", "s", as_of))


def test_expired_chunks_are_deleted() -> None:
    state = PairState()
    chunks = Chunks()
    for i in range(3 * INLINE):
        apply(state, event(f"i{i}", "VIEW", NOW - timedelta(seconds=i), i), chunks=chunks)
    assert chunks
    later = NOW_US + 31 * 86_400 * 1_000_000
    apply(state, event("late", "VIEW", from_micros(later), 10**6), now_us=later, chunks=chunks)
    assert not chunks  # every old time and every old id is gone
    assert state.total == 3 * INLINE + 1 and state.times.tolist() == [later]


def test_unknown_pair_is_zero() -> None:
    v = feature_vector("u", "s", None, [], [], NOW_US, SCORING)
    assert v["number_of_interactions"] == 0 and v["user_seller_score"] == 0.0
    assert v["as_of"] == from_micros(NOW_US).isoformat()
    assert v["first_interaction_at"] is None and v["interactions_by_kind"] == dict.fromkeys(
        KINDS, 0
    )


def test_category_features() -> None:
    assert category_features({"a", "b"}, {"b", "c"}) == (True, 1, 1 / 3)
    assert category_features(set(), {"b"}) == (False, 0, 0.0)
    assert category_features(set(), set()) == (False, 0, 0.0)


def test_window_bounds_are_half_open() -> None:
    state = PairState()
    edge = NOW - timedelta(days=1)
    apply(state, event("a", "VIEW", edge, 0))  # exactly 1d old: out of 1d
    apply(state, event("b", "VIEW", NOW, 1))  # at as_of: in
    apply(state, event("c", "VIEW", NOW + timedelta(seconds=1), 2))  # future: out
    v = vector(state, NOW)
    assert (v["interactions_1d"], v["interactions_7d"], v["number_of_interactions"]) == (1, 2, 3)


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(
        st.sampled_from([0, 1, -1, W1, W7, W30, -W1, W1 + 1, W30 - 1, W30 + 1])
        | st.integers(-40 * W1, 2 * W1),
        max_size=12,
    ),
)
def test_few_window_counts_counts_as_the_bisection_does(offsets: list[int]) -> None:
    """The vector memo's one-pass window counts of a few times agree with the bisection
    of sorted times, at the windows' edges too (a time exactly at as_of, or exactly a
    window before it)."""
    as_of = 1_700_000_000_000_000
    times = [as_of - offset for offset in offsets]
    assert few_window_counts(times, as_of) == inline_window_counts(sorted(times), as_of)
    assert few_window_counts(tuple(times), as_of) == inline_window_counts(sorted(times), as_of)


def test_top_k_orders_by_score_then_count_then_id() -> None:
    # (score, interactions, seller) as top_k takes them: negated score and count.
    rows = [(1.0, 1, "b"), (2.0, 1, "c"), (1.0, 1, "a"), (1.0, 5, "z")]
    ranked = top_k([(-score, -n, seller) for score, n, seller in rows], 3)
    assert [seller for _, _, seller in ranked] == ["c", "z", "a"]


offsets_s = st.floats(min_value=-90 * 86400, max_value=2 * 86400, allow_nan=False)
kinds = st.sampled_from(["LIKE", "VIEW", "PURCHASE", "OTHER"])


def truth_cases(ids: int, events: int) -> Any:
    """Histories of up to `events` interactions drawing from `ids` ids, an as_of after
    them, and a user's favorites and a seller's categories."""
    return given(
        events=st.lists(st.tuples(st.integers(0, ids), kinds, offsets_s), max_size=events),
        as_of_shift_s=st.floats(min_value=0, max_value=10 * 86400, allow_nan=False),
        fav=st.sets(st.sampled_from("abcd"), max_size=3),
        cats=st.sets(st.sampled_from("abcd"), max_size=3),
    )


@settings(max_examples=300, deadline=None)
@truth_cases(ids=30, events=60)
def test_matches_brute_force_truth(events, as_of_shift_s, fav, cats) -> None:
    """Out-of-order times over ~90 days, duplicate ids, any as_of after processing."""
    check_against_truth(events, as_of_shift_s, fav, cats, Chunks())


@settings(max_examples=300, deadline=None)
@truth_cases(ids=60, events=120)
def test_a_spilled_pair_matches_brute_force_truth(events, as_of_shift_s, fav, cats) -> None:
    """As above with chunks of a few entries: times and ids spill, fill the last chunk,
    split when a late time lands in a full one, and stay exact; so does the stored value
    read back (decode and the lookup's PairView)."""
    chunks = Chunks()
    with small_chunks():
        state = check_against_truth(events, as_of_shift_s, fav, cats, chunks)
        assert all(c[3] <= pair_state.CHUNK_MAX for c in state.tchunks)
        assert all(c[2] <= pair_state.CHUNK_MAX for c in state.schunks)
        assert max(map(len, chunks.values()), default=0) <= 8 * pair_state.CHUNK_MAX
        as_of = from_micros(to_micros(NOW + timedelta(seconds=as_of_shift_s)))
        want = vector(state, as_of, fav, cats, chunks)
        for again in (
            PairState.decode(state.encode()),
            PairState.decode_for_lookup(state.encode()),
        ):
            assert vector(again, as_of, fav, cats, chunks) == want


def check_against_truth(events, as_of_shift_s, fav, cats, chunks: Chunks) -> PairState:
    truth = Truth(favorites={"u": set(fav)}, categories={"s": set(cats)})
    state = PairState()
    for offset, (n, kind, shift) in enumerate(events):
        on = from_micros(to_micros(NOW + timedelta(seconds=shift)))
        iid = f"i{n}"
        counted = truth.interact(iid, "u", "s", kind, on)
        outcome = apply(state, event(iid, kind, on, offset), chunks=chunks)
        assert (outcome is Outcome.COUNTED) == counted
    as_of = from_micros(to_micros(NOW + timedelta(seconds=as_of_shift_s)))
    assert_vector_equal(vector(state, as_of, fav, cats, chunks), truth.vector("u", "s", as_of))
    return state


def test_spills_fill_the_last_chunk_before_starting_one() -> None:
    """Times in order and new ids, as a hot pair mostly gets them: the inline parts spill
    every INLINE / 2 times and INLINE ids, yet the chunks are about one per CHUNK_MAX
    entries, so a window count or a dedupe check reads few of them; the value stays
    small."""
    state = PairState()
    chunks = Chunks()
    n = 5 * CHUNK_MAX
    for i in range(n):
        on = NOW - timedelta(seconds=n - i)
        assert apply(state, event(f"i{i}", "VIEW", on, i), chunks=chunks) is Outcome.COUNTED
    assert len(state.tchunks) <= n // CHUNK_MAX + 1
    assert len(state.schunks) <= n // CHUNK_MAX + 1
    assert sum(c[3] for c in state.tchunks) + len(state.times) == n
    assert sum(c[2] for c in state.schunks) + len(state.seen_at) == n
    assert len(state.encode()) <= 24 * INLINE + 1024
    assert apply(state, event("i7", "VIEW", NOW, n), chunks=chunks) is Outcome.DUPLICATE


@settings(max_examples=200, deadline=None)
@given(
    gaps_days=st.lists(
        st.floats(min_value=0, max_value=3000, allow_nan=False), min_size=1, max_size=20
    ),
    half_life_days=st.floats(min_value=0.01, max_value=30),
)
def test_decay_survives_long_spans(gaps_days, half_life_days) -> None:
    """Rebasing the decay reference keeps the score finite and exact over years."""
    scoring = Scoring((3.0, 1.0, 5.0, 0.5), half_life_days * 86400, 0.0)
    state = PairState()
    on = datetime(2000, 1, 1, tzinfo=UTC)
    times = []
    for i, gap in enumerate(gaps_days):
        on = from_micros(to_micros(on + timedelta(days=gap)))
        times.append(on)
        state.apply(
            event(f"i{i}", "PURCHASE", on, i), to_micros(on), scoring.half_life_s, 0, Chunks().load
        )
    as_of = times[-1]
    want = sum(5.0 * 2 ** (-(as_of - t).total_seconds() / scoring.half_life_s) for t in times)
    got = feature_vector("u", "s", state, [], [], to_micros(as_of), scoring)["user_seller_score"]
    assert math.isfinite(got)
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 60), kinds, offsets_s, st.integers(0, 3)), max_size=90
    ),
)
def test_the_stored_layout_is_the_documented_one(events) -> None:
    """encode writes HEADER_FORMAT, then offsets, inline times, seen ids, the times they
    were counted, and the time and seen-id chunk entries (what PairView, the serving
    processes and values stored by earlier versions rely on), and decode reads it back."""
    state = PairState()
    with small_chunks():
        for offset, (n, kind, shift, partition) in enumerate(events):
            on = from_micros(to_micros(NOW + timedelta(seconds=shift)))
            apply(state, event(f"i{n}", kind, on, offset, partition))
    ids = list(array("Q", bytes(state.seen_ids)))
    flat = [
        *(v for item in state.offsets.items() for v in item),
        *state.times,
        *ids,
        *state.seen_at,
        *(v for chunk in state.tchunks for v in chunk),
        *(v for chunk in state.schunks for v in chunk),
    ]
    sizes = (len(state.offsets), len(state.times), len(ids), len(state.tchunks), len(state.schunks))
    n_off, n_t, n_s, n_tc, n_sc = sizes
    layout = f"<B4Iqqq4dIIIIII{2 * n_off + n_t}q{n_s}Q{n_s + 4 * n_tc + 3 * n_sc}q"
    head = (2, *state.counts, state.first_us, state.last_us, state.ref_us, *state.acc)
    want = struct.pack(layout, *head, state.next_chunk, *sizes, *flat)
    assert state.encode() == want
    again = PairState.decode(want)
    assert again.encode() == want
    assert (again.times, again.seen_ids, again.seen_at) == (
        state.times,
        state.seen_ids,
        state.seen_at,
    )
    with pytest.raises(ValueError):
        PairState.decode(want + b"\0" * 8)


def test_a_seen_id_is_found_only_on_an_entry_boundary() -> None:
    ids = bytearray()
    for digest in (0x1111111122222222, 0x3333333344444444):
        ids += digest.to_bytes(8, "little")
    assert pair_state._holds(ids, (0x3333333344444444).to_bytes(8, "little"))
    assert pair_state._holds(ids, (0x1111111122222222).to_bytes(8, "little"))
    # The last half of the first entry and the first half of the second: not an id.
    assert not pair_state._holds(ids, (0x4444444411111111).to_bytes(8, "little"))
    assert not pair_state._holds(bytearray(), b"\0" * 8)
