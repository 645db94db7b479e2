"""Batch counting: any split of a partition's sequence into batches gives the same state
as one interaction at a time, and the same numbers as the brute-force truth."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.core import seller_index
from streamapp.core.counting import count_batch, pair_key
from streamapp.core.features import feature_vector
from streamapp.core.models import KIND_INDEX
from streamapp.core.pair_state import Interaction, PairState
from streamapp.core.score import Scoring
from streamapp.core.times import from_micros, to_micros
from tests.truth import Truth, assert_vector_equal
from tests.unit.memory import MemoryTable as Table

WEEK_S = 7 * 86400.0
SCORING = Scoring((3.0, 1.0, 5.0, 0.5), WEEK_S, 1.0)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)


def run(batches: list[list[Interaction]]) -> tuple[Table, Table, int]:
    pairs, index = Table(), Table()
    counted = 0
    for batch in batches:
        result = count_batch(
            batch,
            pairs.load,
            index.load,
            NOW_US,
            WEEK_S,
            WEEK_S,
            SCORING.weights,
            scan_pairs=pairs.scan,
        )
        pairs.apply(result.pair_writes)
        index.apply(result.index_writes)
        counted += result.counted
    return pairs, index, counted


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
    assert split[2] == one_by_one[2] == sum(len(v) for v in truth.pairs.values())
    for (user, seller), _ in truth.pairs.items():
        raw = split[0][pair_key(user, seller)]
        got = feature_vector(user, seller, PairState.decode(raw), (), (), NOW_US, SCORING)
        assert_vector_equal(got, truth.vector(user, seller, NOW))
        index = seller_index.sellers(user.encode(), split[1].load)
        assert sorted(index) == sorted(s for u, s in truth.pairs if u == user)


def test_seller_index_grows_into_shards_and_keeps_every_seller() -> None:
    index = Table()
    sellers = [f"s{i:0>200}" for i in range(5_000)]
    for start in range(0, len(sellers), 700):
        index.apply(seller_index.add(b"u", sellers[start : start + 700], index.load))
        index.apply(seller_index.add(b"u", sellers[:10], index.load))  # already there: no-op
    assert sorted(seller_index.sellers(b"u", index.load)) == sorted(sellers)
    assert max(len(v) for v in index.values()) < 256 * 1024
    assert seller_index.add(b"u", sellers[:100], index.load) == {}
