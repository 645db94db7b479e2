"""Batch counting: any split of a partition's sequence into batches gives the same state
as one interaction at a time, and the same numbers as the brute-force truth."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.core import seller_ranking
from streamapp.core.counting import count_batch, pair_key, user_sellers
from streamapp.core.features import feature_vector
from streamapp.core.models import KIND_INDEX
from streamapp.core.pair_state import CHUNK_SEP, Interaction, PairState
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
