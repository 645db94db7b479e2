import base64
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamapp.models import KIND_INDEX, InteractionKind, kind_of, to_micros
from streamapp.parsing import (
    Delete,
    Record,
    Rejected,
    accept_interaction,
    dead_letter,
    parse_interaction,
    parse_seller,
    parse_user,
)

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
    from streamapp.models import from_micros

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
    timestamp=st.sampled_from([None, TS_US]),
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
