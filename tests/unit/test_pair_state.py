"""Pair state against the brute-force truth model, including property-based tests."""

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from streamapp.features import category_features, feature_vector
from streamapp.models import InteractionKind, RoutedInteraction, from_micros, to_micros
from streamapp.pair_state import Outcome, PairState, apply
from streamapp.score import Ranked, Scoring, top_k
from tests.truth import KINDS, Truth, assert_vector_equal

WEEK_S = 7 * 86400.0
SCORING = Scoring((3.0, 1.0, 5.0, 0.5), WEEK_S, 1.0)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)


def event(iid: str, kind: str, on: datetime, seen: datetime = NOW) -> RoutedInteraction:
    return RoutedInteraction(
        id=iid,
        user_id="u",
        seller_id="s",
        kind=InteractionKind(kind),
        on_us=to_micros(on),
        seen_us=to_micros(seen),
    )


def vector(
    state: PairState, as_of: datetime, fav: set[str] = frozenset(), cats: set[str] = frozenset()
) -> dict:
    v = feature_vector("u", "s", state, fav, cats, to_micros(as_of), SCORING)
    for name in ("first_interaction_at", "last_interaction_at", "as_of"):
        v[name] = v[name].isoformat() if v[name] else None
    return v


def test_counts_dedupe_and_replay() -> None:
    state = PairState()
    assert apply(state, event("a", "LIKE", NOW), 0, NOW_US, WEEK_S, WEEK_S) is Outcome.COUNTED
    assert apply(state, event("a", "LIKE", NOW), 1, NOW_US, WEEK_S, WEEK_S) is Outcome.DUPLICATE
    assert apply(state, event("b", "VIEW", NOW), 1, NOW_US, WEEK_S, WEEK_S) is Outcome.REPLAY
    assert apply(state, event("b", "VIEW", NOW), 2, NOW_US, WEEK_S, WEEK_S) is Outcome.COUNTED
    assert state.counts == [1, 1, 0, 0]
    # Seen again after the horizon (by record time): counted again.
    later = NOW + timedelta(days=8)
    assert (
        apply(state, event("a", "LIKE", later, later), 3, NOW_US, WEEK_S, WEEK_S) is Outcome.COUNTED
    )
    assert state.total == 3


def test_json_roundtrip_keeps_everything() -> None:
    state = PairState()
    apply(state, event("a", "PURCHASE", NOW - timedelta(days=2)), 5, NOW_US, WEEK_S, WEEK_S)
    again = PairState.from_json(state.to_json())
    assert again == state


def test_unknown_pair_is_zero() -> None:
    v = feature_vector("u", "s", None, [], [], NOW_US, SCORING)
    assert v["number_of_interactions"] == 0 and v["user_seller_score"] == 0.0
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
    apply(state, event("a", "VIEW", edge), 0, NOW_US, WEEK_S, WEEK_S)  # exactly 1d old: out of 1d
    apply(state, event("b", "VIEW", NOW), 1, NOW_US, WEEK_S, WEEK_S)  # at as_of: in
    apply(
        state, event("c", "VIEW", NOW + timedelta(seconds=1)), 2, NOW_US, WEEK_S, WEEK_S
    )  # future: out
    v = vector(state, NOW)
    assert (v["interactions_1d"], v["interactions_7d"], v["number_of_interactions"]) == (1, 2, 3)


def test_top_k_orders_by_score_then_count_then_id() -> None:
    rows = [Ranked(1.0, 1, "b"), Ranked(2.0, 1, "c"), Ranked(1.0, 1, "a"), Ranked(1.0, 5, "z")]
    assert [r.seller_id for r in top_k(rows, 3)] == ["c", "z", "a"]


offsets_s = st.floats(min_value=-90 * 86400, max_value=2 * 86400, allow_nan=False)
kinds = st.sampled_from(["LIKE", "VIEW", "PURCHASE", "OTHER"])


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 30), kinds, offsets_s), max_size=60),
    as_of_shift_s=st.floats(min_value=0, max_value=10 * 86400, allow_nan=False),
    fav=st.sets(st.sampled_from("abcd"), max_size=3),
    cats=st.sets(st.sampled_from("abcd"), max_size=3),
)
def test_matches_brute_force_truth(events, as_of_shift_s, fav, cats) -> None:
    """Out-of-order times over ~90 days, duplicate ids, any as_of after processing."""
    truth = Truth(favorites={"u": set(fav)}, categories={"s": set(cats)})
    state = PairState()
    for offset, (n, kind, shift) in enumerate(events):
        on = from_micros(to_micros(NOW + timedelta(seconds=shift)))
        iid = f"i{n}"
        counted = truth.interact(iid, "u", "s", kind, on)
        outcome = apply(state, event(iid, kind, on), offset, NOW_US, WEEK_S, WEEK_S)
        assert (outcome is Outcome.COUNTED) == counted
    as_of = from_micros(to_micros(NOW + timedelta(seconds=as_of_shift_s)))
    assert_vector_equal(vector(state, as_of, fav, cats), truth.vector("u", "s", as_of))


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
        apply(state, event(f"i{i}", "PURCHASE", on), i, to_micros(on), scoring.half_life_s, 0)
    as_of = times[-1]
    want = sum(5.0 * 2 ** (-(as_of - t).total_seconds() / scoring.half_life_s) for t in times)
    got = feature_vector("u", "s", state, [], [], to_micros(as_of), scoring)["user_seller_score"]
    assert math.isfinite(got)
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300)
