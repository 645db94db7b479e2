"""Feature vector ids: the contract's "<user_id>-<seller_id>", unambiguous for any ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamapp.core.features import pair_id, split_pair_id
from tests.truth import Truth

# Ids drawn mostly from the characters that matter, so collisions would be found.
ids = st.text(alphabet=st.sampled_from("ab-\\\\c") | st.characters(), min_size=1, max_size=12)


def test_the_issue_11_collision_is_gone() -> None:
    assert pair_id("a-b", "c") != pair_id("a", "b-c")
    assert pair_id("a-b", "c") == "a\\-b-c"
    assert pair_id("a", "b-c") == "a-b\\-c"
    assert pair_id("a\\", "b") != pair_id("a", "\\b")


@given(st.tuples(ids, ids), st.tuples(ids, ids))
def test_distinct_pairs_never_share_an_id(one: tuple[str, str], other: tuple[str, str]) -> None:
    assert (pair_id(*one) == pair_id(*other)) == (one == other)


@given(ids, ids)
def test_the_id_gives_back_its_pair(user: str, seller: str) -> None:
    assert split_pair_id(pair_id(user, seller)) == (user, seller)


plain = st.text(min_size=1).filter(lambda t: "-" not in t and "\\" not in t)


@given(plain, plain)
def test_plain_ids_keep_the_contract_form(user: str, seller: str) -> None:
    assert pair_id(user, seller) == f"{user}-{seller}"


@pytest.mark.parametrize("bad", ["abc", "a-b-c", "a\\b-c", "a-b\\"])
def test_malformed_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        split_pair_id(bad)


@given(ids, ids)
def test_the_truth_model_follows_the_same_rule(user: str, seller: str) -> None:
    assert Truth().vector(user, seller, datetime.now(UTC))["id"] == pair_id(user, seller)
