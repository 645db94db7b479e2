"""A vector's JSON text, filled in around its static parts (features.vector_text), is byte for
byte what encoding the vector dict gives: every id style, missing and present times, scores of
every size and sign, and the contract's model reads it back."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.core.counting import pair_key
from streamapp.core.features import (
    assemble,
    category_text,
    feature_vector,
    head_text,
    middle_text,
    text_parts,
    update_text,
    vector_text,
)
from streamapp.core.models import AffinityUpdate, FeatureVector
from streamapp.core.pair_state import US, PairState
from streamapp.core.score import Scoring
from streamapp.core.times import iso_micros
from tests.unit.memory import MemoryTable as Table
from tests.unit.test_seller_ranking import CATEGORIES, NOW_US, WEEK_S, count

# Any text, control characters and line separators included (the encoder must escape what
# ids never hold, too), and the id styles the contract names.
ids = st.text(
    st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12
) | st.sampled_from(["u1", "a-b", "a\\b", 'q"uote', "ünï", "😀", "%b%d", "\u2028"])
counts = st.integers(0, 2**40)
times = st.none() | st.integers(0, 2**62).map(iso_micros)
# Every float (NaN and infinities encode as null either way) and ints, as a score of a
# configuration with integer weights could be.
scores = (
    st.floats()
    | st.sampled_from([0.0, -0.0, 1e-300, 1e300, 1.5, 1e16, 123456789.125, 0.1 + 0.2])
    | st.integers(-(2**63), 2**63 - 1)
)


def static_text(parts: tuple) -> tuple[bytes, bytes]:
    """(head, middle) of the vector's text for static parts as feature_vector builds them."""
    head = head_text(*parts[0:3], *parts[4:8])
    return head, middle_text(parts[8], parts[9], category_text(*parts[10:13]))


@given(
    ids,
    ids,
    st.tuples(counts, counts, counts, counts),
    times,
    times,
    st.booleans(),
    st.integers(0, 50),
    st.floats(0, 1),
    st.tuples(counts, counts, counts),
    scores,
    st.integers(0, 2**62),
)
def test_text_is_the_encoded_vector(
    user: str,
    seller: str,
    kinds: tuple[int, int, int, int],
    first: str | None,
    last: str | None,
    match: bool,
    overlap: int,
    jaccard: float,
    windows: tuple[int, int, int],
    score: float | int,
    as_of_us: int,
) -> None:
    parts = (f"{user}-{seller}", user, seller, sum(kinds), *kinds, first, last)
    parts += (match, overlap, jaccard, 0.0)
    as_of = iso_micros(as_of_us)
    head, middle = static_text(parts)  # type: ignore[arg-type]
    text = vector_text(head, middle, *windows, score, orjson.dumps(as_of))
    assert text == orjson.dumps(assemble(parts, *windows, score, as_of))  # type: ignore[arg-type]


def test_text_reads_as_the_contract_model() -> None:
    parts = ("u-s", "u", "s", 3, 1, 1, 1, 0, iso_micros(10**15), iso_micros(2 * 10**15))
    parts += (True, 1, 0.5, 1.5)
    head, middle = static_text(parts)  # type: ignore[arg-type]
    text = vector_text(head, middle, 1, 2, 3, 2.25, orjson.dumps(iso_micros(3 * 10**15)))
    vector = FeatureVector.model_validate_json(text)
    assert (vector.interactions_1d, vector.interactions_7d, vector.interactions_30d) == (1, 2, 3)
    assert vector.user_seller_score == 2.25
    assert vector.interactions_by_kind.model_dump() == {
        "LIKE": 1,
        "VIEW": 1,
        "PURCHASE": 1,
        "OTHER": 0,
    }
    assert orjson.loads(text)["number_of_interactions"] == 3


@settings(max_examples=200, deadline=None)
@given(
    user=ids,
    seller=ids,
    offsets=st.lists(st.integers(-40 * 86400, 2 * 86400), max_size=30),
    favorites=st.frozensets(st.sampled_from(CATEGORIES)),
    categories=st.frozensets(st.sampled_from(CATEGORIES)),
    as_of_s=st.integers(-400 * 86400, 3 * 86400),
    covered=st.lists(ids, min_size=1, max_size=4),
    listed=st.booleans(),
    bonus=st.sampled_from([0.0, 1.5, -2.0]),
)
def test_an_update_is_the_encoded_vector_and_its_interactions(
    user: str,
    seller: str,
    offsets: list[int],
    favorites: frozenset[str],
    categories: frozenset[str],
    as_of_s: int,
    covered: list[str],
    listed: bool,
    bonus: float,
) -> None:
    """update_text(text_parts(...)) is byte for byte the update the worker encoded as a dict
    (feature_vector and three fields), for states as counting leaves them (full, as the
    worker holds them, and as a lookup reads them), never counted pairs, every id style."""
    scoring = Scoring((3.0, 1.0, 5.0, 0.5), WEEK_S, bonus)
    pairs = Table()
    events = [(user, seller, n % 4, NOW_US + s * US) for n, s in enumerate(offsets)]
    if events:
        count(pairs, events, scoring.weights)
    raw = pairs.get(pair_key(user, seller))
    states = [PairState.decode(raw), PairState.decode_for_lookup(raw)] if raw else [None]
    as_of = NOW_US + as_of_s * US + 17
    as_of_json = orjson.dumps(iso_micros(as_of))
    ids_or_none = covered if listed else None
    for state in states:
        vector = feature_vector(user, seller, state, favorites, categories, as_of, scoring)
        vector |= {
            "interaction_id": covered[-1],
            "interactions_covered": len(covered),
            "interaction_ids": ids_or_none,
        }
        parts = text_parts(user, seller, state, favorites, categories, as_of, scoring)
        text = update_text(parts, as_of_json, covered[-1], len(covered), ids_or_none)
        assert text == orjson.dumps(vector)
        assert vector_text(*parts, as_of_json) == orjson.dumps(
            feature_vector(user, seller, state, favorites, categories, as_of, scoring)
        )
        AffinityUpdate.model_validate_json(text)
