"""The vector memo never changes an answer: lookup.vectors, memo and all, gives exactly the
vector feature_vector() builds from the stored bytes at that moment, on random histories,
profiles that change (to equal and to different sets), as_of values in any order (years
back, days ahead), a memo small enough to roll over, unknown pairs and hot pairs whose event
times spill into chunks."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.core import lookup
from streamapp.core.counting import pair_key
from streamapp.core.features import feature_vector
from streamapp.core.pair_state import INLINE, US, PairState
from streamapp.core.score import Scoring
from streamapp.core.times import iso_micros
from tests.unit.memory import MemoryTable as Table
from tests.unit.test_seller_ranking import NOW_US, WEEK_S, Profiles, Reader, count

CATEGORIES = ["shoes", "games", "books", "garden"]
SCORING = Scoring((3.0, 1.0, 5.0, 0.5), WEEK_S, 1.5)


def expected(
    pairs: Table, src: lookup.Sources, user: str, seller: str, as_of_us: int
) -> dict[str, object]:
    """The vector built from scratch, as before the memo existed."""
    key = pair_key(user, seller)
    raw = pairs.get(key)

    def load(suffix: bytes) -> bytes | None:
        return pairs.get(key + suffix)

    state = PairState.decode_for_lookup(raw) if raw else None
    return feature_vector(
        user,
        seller,
        state,
        src.users.categories(user),
        src.sellers.categories(seller),
        as_of_us,
        SCORING,
        load,
        iso_micros(as_of_us),
    )


def ask(src: lookup.Sources, wanted: list[tuple[str, str]], as_of_us: int) -> list[dict]:
    return asyncio.run(lookup.vectors(src, wanted, as_of_us))


events_st = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u-3"]),
        st.integers(0, 6).map(lambda n: f"s{n}"),
        st.integers(0, 3),
        st.integers(-3 * 365 * 86400, 2 * 86400).map(lambda s: NOW_US + s * US),
    ),
    min_size=1,
    max_size=60,
)
as_of_st = st.integers(-400 * 86400, 3 * 86400).map(lambda s: NOW_US + s * US + 123)


@settings(max_examples=150, deadline=None)
@given(
    rounds=st.lists(st.tuples(events_st, st.lists(as_of_st, min_size=1, max_size=4)), max_size=5),
    capacity=st.sampled_from([1, 3, 1000]),
    seed=st.integers(0, 2**32),
)
def test_the_memo_answers_exactly_what_a_fresh_build_does(
    rounds: list[tuple[list, list[int]]], capacity: int, seed: int
) -> None:
    rng = random.Random(seed)
    pairs = Table()
    favs: dict[str, frozenset[str]] = {}
    cats: dict[str, frozenset[str]] = {}
    src = lookup.Sources(Reader(pairs), Profiles(favs), Profiles(cats), lambda _: 0, SCORING)
    src.memo.capacity = capacity
    everyone = [(u, f"s{n}") for u in ("u1", "u2", "u-3", "u-never") for n in range(8)]
    offset = 0
    for events, as_ofs in rounds:
        count(pairs, events, SCORING.weights, batch=5, offset=offset)
        offset += len(events)
        for as_of in as_ofs:
            # Profiles change between asks: to a different set, or to an equal new object.
            for table, ids in ((favs, ("u1", "u2", "u-3")), (cats, [f"s{n}" for n in range(8)])):
                entity = rng.choice(list(ids))
                if rng.random() < 0.5:
                    table[entity] = frozenset(rng.sample(CATEGORIES, rng.randrange(3)))
                elif entity in table:
                    table[entity] = frozenset(set(table[entity]))
            wanted = rng.sample(everyone, rng.randrange(1, len(everyone)))
            wanted += wanted[: rng.randrange(3)]  # a pair asked twice in one query
            for _ in range(2):  # the second time from the memo, where it holds the pair
                got = ask(src, wanted, as_of)
                assert got == [expected(pairs, src, u, s, as_of) for u, s in wanted]


def test_a_pair_is_built_once_and_then_only_moved_in_time() -> None:
    pairs = Table()
    src = lookup.Sources(
        Reader(pairs),
        Profiles({"u1": frozenset({"shoes"})}),
        Profiles({"s1": frozenset({"shoes", "games"})}),
        lambda _: 0,
        SCORING,
    )
    count(pairs, [("u1", "s1", 2, NOW_US - 3 * 86400 * US)], SCORING.weights)
    first = ask(src, [("u1", "s1")], NOW_US)[0]
    assert len(src.memo) == 1
    later = NOW_US + 5 * 86400 * US  # 8 days after the event: out of the 7-day window
    second = ask(src, [("u1", "s1")], later)[0]
    assert len(src.memo) == 1
    assert first["interactions_1d"] == 0 and first["interactions_7d"] == 1
    assert second["interactions_7d"] == 0 and second["interactions_30d"] == 1
    assert second["user_seller_score"] < first["user_seller_score"]
    assert second["as_of"] == iso_micros(later)
    assert second == expected(pairs, src, "u1", "s1", later)
    # Counted again: the stored bytes differ, so the entry is rebuilt, not reused.
    count(pairs, [("u1", "s1", 0, NOW_US)], SCORING.weights, offset=1)
    third = ask(src, [("u1", "s1")], later)[0]
    assert third["number_of_interactions"] == 2
    assert third == expected(pairs, src, "u1", "s1", later)


def test_a_hot_pair_whose_times_spill_into_chunks_is_built_every_time() -> None:
    pairs = Table()
    src = lookup.Sources(Reader(pairs), Profiles({}), Profiles({}), lambda _: 0, SCORING)
    n = INLINE + 300
    count(
        pairs,
        [("u1", "hot", n % 4, NOW_US - (n - i) * 60 * US) for i in range(n)],
        SCORING.weights,
        batch=500,
    )
    raw = pairs.get(pair_key("u1", "hot"))
    assert raw and PairState.decode_for_lookup(raw).tchunks  # the case under test
    for as_of in (NOW_US, NOW_US - 5 * 3600 * US, NOW_US + 86400 * US):
        got = ask(src, [("u1", "hot")], as_of)[0]
        assert got == expected(pairs, src, "u1", "hot", as_of)
        assert got["number_of_interactions"] == n
    assert len(src.memo) == 0


def test_the_memo_is_bounded_by_entries_and_by_bytes(monkeypatch) -> None:
    from streamapp.core import vector_memo

    pairs = Table()
    src = lookup.Sources(Reader(pairs), Profiles({}), Profiles({}), lambda _: 0, SCORING)
    count(
        pairs,
        [("u1", f"s{n}", 0, NOW_US - (n * 7 + i) * US) for n in range(40) for i in range(n)],
        SCORING.weights,
        batch=50,
    )
    wanted = [("u1", f"s{n}") for n in range(40)]
    sizes = {key: len(pairs.get(pair_key(*key)) or b"") for key in wanted}
    budget = 3 * max(sizes.values())
    monkeypatch.setattr(vector_memo, "BYTES_PER_GENERATION", budget)
    src.memo.capacity = 25
    for _ in range(2):
        assert ask(src, wanted, NOW_US) == [expected(pairs, src, u, s, NOW_US) for u, s in wanted]
        for generation in (src.memo._new, src.memo._old):
            assert len(generation) <= 25
            assert sum(vector_memo.entry_bytes(entry) for entry in generation.values()) <= budget


def test_a_dropped_generation_is_freed_a_few_entries_at_a_time(monkeypatch) -> None:
    from streamapp.core import vector_memo
    from streamapp.core.vector_memo import FREED_PER_KEEP, VectorMemo, entry_bytes

    # Small entries fill generations by count, then big ones by bytes: the dropped
    # generation of small entries must still be gone before the next swap.
    budget = 20_000
    monkeypatch.setattr(vector_memo, "BYTES_PER_GENERATION", budget)
    memo = VectorMemo(SCORING, capacity=40)

    def entry(text_bytes: int) -> tuple:
        return (b"h" * text_bytes, b"m", 0.0, b"raw", (), (), None, 0, 0, 0.0)

    sizes = [300] * 200 + [2_000] * 60 + [300] * 100 + [1_000] * 50
    biggest = max(entry_bytes(entry(n)) for n in sizes)
    for n, text_bytes in enumerate(sizes):
        old_before = memo._old
        left_before = sum(entry_bytes(e) for e in memo._dropped.values())
        memo._keep(f"k{n}".encode(), entry(text_bytes))
        waiting = memo._dropped
        assert len(memo._new) <= memo.capacity and len(memo._old) <= memo.capacity
        if memo._old is not old_before:  # a swap: the previous generation waits, whole
            assert left_before < biggest  # what was left of the one before: under an entry
            assert len(waiting) >= len(old_before) - FREED_PER_KEEP
        # Never more than one generation waits, in entries and in bytes.
        assert len(waiting) <= memo.capacity
        assert sum(entry_bytes(e) for e in waiting.values()) <= budget

    # Answers do not change across swaps: the memo small enough to roll over many times.
    pairs = Table()
    src = lookup.Sources(Reader(pairs), Profiles({}), Profiles({}), lambda _: 0, SCORING)
    count(pairs, [("u1", f"s{n}", 0, NOW_US - n * US) for n in range(60)], SCORING.weights)
    src.memo.capacity = 7
    wanted = [("u1", f"s{n}") for n in range(60)]
    for as_of in (NOW_US, NOW_US + 3 * US, NOW_US + 86_400 * US):
        assert ask(src, wanted, as_of) == [expected(pairs, src, u, s, as_of) for u, s in wanted]


@pytest.mark.parametrize("n_times", [0, 1, 8, 9, 200, INLINE])
@pytest.mark.parametrize(("user", "seller"), [("u1", "s1"), ("u-1", 'q"s\\1'), ("ünï", "😀\u2028")])
def test_the_texts_are_the_encoded_vector_byte_for_byte(
    n_times: int, user: str, seller: str
) -> None:
    """Built (first sight) and again from the memo, with the few event times kept as numbers
    (at most 8) or read in place from the stored bytes (more): the exact bytes of
    orjson.dumps(feature_vector(...)), for plain and escaped ids and pairs never counted."""
    pairs = Table()
    favs = {user: frozenset({"shoes", "games"})}
    cats = {seller: frozenset({"games", "books", "garden"})}
    src = lookup.Sources(Reader(pairs), Profiles(favs), Profiles(cats), lambda _: 0, SCORING)
    # Spread over the last 40 days: some in each window, some older than all of them.
    events = [
        (user, seller, i % 4, NOW_US - (i * 40 * 86400 * US) // max(n_times, 1))
        for i in range(n_times)
    ]
    count(pairs, events, SCORING.weights, batch=97)
    assert bool(pairs.get(pair_key(user, seller))) == bool(n_times)
    for as_of in (NOW_US, NOW_US - 10 * 86400 * US, NOW_US + 2 * 86400 * US + 7, NOW_US):
        want = orjson.dumps(expected(pairs, src, user, seller, as_of))
        for _ in range(2):  # built, then from the memo
            got = asyncio.run(lookup.vector_texts(src, [(user, seller)], as_of))
            assert got == [want]
    assert len(src.memo) == 1
