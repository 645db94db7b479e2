import base64
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamapp.core.features import feature_vector
from streamapp.core.models import KIND_INDEX, InteractionKind, kind_of
from streamapp.core.pair_state import PairState
from streamapp.core.parsing import (
    Delete,
    Record,
    Rejected,
    accept_interaction,
    dead_letter,
    parse_interaction,
    parse_seller,
    parse_user,
)
from streamapp.core.score import Scoring
from streamapp.core.times import MAX_EVENT_US, MIN_EVENT_US, from_micros, to_micros

TS_US = 1_700_000_000_000_000


def rec(value: bytes | None, key: bytes | None = None, topic: str = "interactions") -> Record:
    return Record(topic=topic, partition=3, offset=42, timestamp_us=TS_US, key=key, value=value)


def msg(**fields: object) -> bytes:
    base: dict[str, object] = {
        "id": "i1",
        "user_id": "u1",
        "seller_id": "s1",
        "interaction_kind": "LIKE",
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("LIKE", "LIKE"),
        ("VIEW", "VIEW"),
        ("PURCHASE", "PURCHASE"),
        ("OTHER", "OTHER"),
        ("like", "OTHER"),
        ("Purchase", "OTHER"),
        ("", "OTHER"),
        ("CLICK", "OTHER"),
        (" LIKE", "OTHER"),
        ("LIKE" * 1_000, "OTHER"),  # any length: a long kind was once dead-lettered
    ],
)
def test_kind_is_exact_match_else_other(text: str, kind: str) -> None:
    assert kind_of(text) is InteractionKind(kind)
    parsed = parse_interaction(rec(msg(interaction_kind=text)), 65536)
    assert not isinstance(parsed, Rejected)
    assert parsed.kind is InteractionKind(kind)


def test_event_time_from_on_else_record_timestamp() -> None:
    with_on = parse_interaction(rec(msg(on="2026-01-02T03:04:05.123456Z")), 65536)
    assert not isinstance(with_on, Rejected)
    assert with_on.on_us == 1767323045123456
    assert (with_on.src_partition, with_on.src_offset) == (3, 42)
    naive = parse_interaction(rec(msg(on="2026-01-02T03:04:05")), 65536)
    assert not isinstance(naive, Rejected) and naive.on_us == 1767323045000000
    offset = parse_interaction(rec(msg(on="2026-01-02T05:04:05+02:00")), 65536)
    assert not isinstance(offset, Rejected) and offset.on_us == 1767323045000000
    without = parse_interaction(rec(msg(on=...)), 65536)
    assert not isinstance(without, Rejected) and without.on_us == TS_US


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (None, "null value"),
        (msg(user_id=""), "user_id"),
        (msg(user_id=12), "user_id"),
        (msg(seller_id=...), "seller_id: Field required"),
        (msg(id=...), "id: Field required"),
        (msg(interaction_kind=None), "interaction_kind"),
        (msg(on=1700000000), "on"),
        (msg(on="yesterday"), "on"),
        (msg(user_id="a\nb"), "user_id"),
        (msg(user_id="x" * 300), "user_id"),
        (msg(user_id={"nested": [1, {"deep": None}]}), "user_id"),
        (b'{"id": "i", "pad": "' + b"x" * 70000 + b'"}', "too large"),
    ],
)
def test_bad_interactions_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    parsed = parse_interaction(rec(value), 65536)
    assert isinstance(parsed, Rejected)
    assert reason in parsed.reason


def test_extra_fields_are_ignored() -> None:
    parsed = parse_interaction(rec(msg(extra={"a": 1})), 65536)
    assert not isinstance(parsed, Rejected)


def test_dead_letter_keeps_original_bytes() -> None:
    letter = dead_letter(rec(b"\xff\x00bin", key=b"k1"), "not valid JSON")
    assert letter.error == "not valid JSON"
    assert (letter.topic, letter.partition, letter.offset) == ("interactions", 3, 42)
    assert (letter.key, letter.key_encoding) == ("k1", "utf-8")
    assert letter.value_encoding == "base64"
    assert base64.b64decode(letter.value or "") == b"\xff\x00bin"
    text = dead_letter(rec(b'{"a":'), "x")
    assert (text.value, text.value_encoding) == ('{"a":', "utf-8")
    assert dead_letter(rec(None), "x").value is None


def test_profiles_and_tombstones() -> None:
    user = parse_user(
        rec(b'{"id": "u1", "age": 30, "favorite_categories": ["a"]}', b"u1", "users"), 65536
    )
    assert not isinstance(user, (Rejected, Delete)) and user.favorite_categories == ["a"]
    assert parse_user(rec(None, b"u1", "users"), 65536) == Delete("u1")
    mismatch = parse_user(rec(b'{"id": "u2"}', b"u1", "users"), 65536)
    assert isinstance(mismatch, Rejected) and "must equal" in mismatch.reason
    assert isinstance(parse_user(rec(None, None, "users"), 65536), Rejected)
    bad_age = parse_user(rec(b'{"id": "u1", "age": "old"}', b"u1", "users"), 65536)
    assert isinstance(bad_age, Rejected)
    seller = parse_seller(rec(b'{"id": "s1", "categories": ["a", "b"]}', None, "sellers"), 65536)
    assert not isinstance(seller, (Rejected, Delete)) and seller.categories == ["a", "b"]
    assert isinstance(
        parse_seller(rec(b'{"id": "s1", "categories": "a"}', None, "sellers"), 65536), Rejected
    )


def test_to_micros_roundtrip() -> None:
    for us in (0, 1, TS_US, TS_US + 999_999, -1_500_000):
        assert to_micros(from_micros(us)) == us


# -- the hot path's parser agrees with the careful one -----------------------------------
_texts = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["u1", "x" * 256, "x" * 257, "a\x00b", "é", "\u2028", "", " "]),
)
_times = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.1Z",
            "2026-01-02T03:04:05.123456+05:30",
            "2026-01-02T03:04:05",
            "2026-01-02 03:04:05",
            "2026-01-02",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:30:00-01:00",
            "0001-01-01T00:30:00+01:00",
            "2026-13-02T03:04:05Z",
            "2026-01-02T03:04:05.1234567Z",
            "not a time",
        ]
    ),
    st.datetimes().map(lambda d: d.isoformat()),
)


@settings(max_examples=500, deadline=None)
@given(
    iid=_texts,
    user=_texts,
    seller=_texts,
    kind=st.one_of(_texts, st.sampled_from(["LIKE", "VIEW", "PURCHASE", 5])),
    on=_times,
    drop=st.sets(st.sampled_from(["id", "user_id", "seller_id", "interaction_kind", "on"])),
    timestamp=st.sampled_from([None, TS_US, 0, MAX_EVENT_US, MAX_EVENT_US + 1, 2**62]),
)
@example("0", "0", "0", "", "2026-13-02T03:04:05Z", set(), None)  # matches the shape, no date
def test_fast_parser_accepts_exactly_what_the_model_accepts(
    iid, user, seller, kind, on, drop, timestamp
) -> None:
    body = {"id": iid, "user_id": user, "seller_id": seller, "interaction_kind": kind, "on": on}
    for name in drop:
        body.pop(name)
    record = Record("interactions", 2, 9, timestamp, None, json.dumps(body).encode())
    careful = parse_interaction(record, 65536)
    fast = accept_interaction(record, 65536)
    if isinstance(careful, Rejected):
        assert fast == careful
    else:
        assert not isinstance(fast, Rejected)
        assert fast == (
            careful.id,
            careful.user_id,
            careful.seller_id,
            KIND_INDEX[careful.kind.value],
            careful.on_us,
            2,
            9,
        )


@pytest.mark.parametrize(
    "on",
    [
        "9999-12-31T23:30:00-01:00",  # year 10000 in UTC (issue 11)
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC (issue 11)
        "9999-12-31T00:00:00Z",  # the last day of 9999: no room for any UTC offset
        "9999-12-31T23:59:59.999999",
        "1969-12-31T23:59:59.999999Z",  # before the epoch
        "0001-01-01T00:00:00Z",
    ],
)
def test_event_time_outside_the_valid_range_is_rejected(on: str) -> None:
    parsed = parse_interaction(rec(msg(on=on)), 65536)
    assert isinstance(parsed, Rejected)
    assert parsed.reason.startswith("invalid message: on:") and "1970-01-01" in parsed.reason


@pytest.mark.parametrize(
    ("on", "micros"),
    [
        ("1970-01-01T00:00:00Z", MIN_EVENT_US),
        ("9999-12-30T23:59:59.999999Z", MAX_EVENT_US),
        ("9999-12-31T00:59:59.999999+01:00", MAX_EVENT_US),
        ("1970-01-01T00:00:00-00:30", 1_800_000_000),
    ],
)
def test_event_time_range_bounds_are_accepted(on: str, micros: int) -> None:
    parsed = parse_interaction(rec(msg(on=on)), 65536)
    assert not isinstance(parsed, Rejected) and parsed.on_us == micros


def test_record_timestamp_outside_the_range() -> None:
    """Without `on` the record timestamp is the event time: it must be in range too. With
    `on`, the record timestamp is not used."""
    far = Record("interactions", 0, 1, 2**62, None, msg(on=...))
    parsed = parse_interaction(far, 65536)
    assert isinstance(parsed, Rejected) and "record timestamp" in parsed.reason
    assert accept_interaction(far, 65536) == parsed  # the hot path defers to the careful one
    with_on = Record("interactions", 0, 1, 2**62, None, msg(on="2026-01-02T03:04:05Z"))
    parsed = parse_interaction(with_on, 65536)
    assert not isinstance(parsed, Rejected) and parsed.on_us == 1767323045000000
    edge = Record("interactions", 0, 1, MAX_EVENT_US, None, msg(on=...))
    parsed = parse_interaction(edge, 65536)
    assert not isinstance(parsed, Rejected) and parsed.on_us == MAX_EVENT_US


@given(st.integers(-(2**63), 2**63 - 1))
def test_from_micros_never_raises(micros: int) -> None:
    moment = from_micros(micros)
    assert moment.tzinfo is not None and moment.isoformat()
    if MIN_EVENT_US <= micros <= MAX_EVENT_US:
        assert to_micros(moment) == micros  # in range: exact, not clamped


@given(
    times=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=2, max_size=2),
    as_of=st.integers(-(2**63), 2**63 - 1),
)
def test_any_stored_time_formats(times: list[int], as_of: int) -> None:
    """A stored value from before the range check (or a corrupt one) cannot fail a lookup."""
    state = PairState()
    state.counts[0] = 1
    state.first_us, state.last_us = min(times), max(times)
    vector = feature_vector("u", "s", state, (), (), as_of, Scoring((3, 1, 5, 0.5), 604800.0, 1.0))
    for name in ("first_interaction_at", "last_interaction_at", "as_of"):
        assert isinstance(vector[name], str)
