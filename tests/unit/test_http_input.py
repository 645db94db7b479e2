"""Request input: `k` parsing (never a 5xx), path encoding for forwarded requests, and the
bulk body's fast path (never accepts what the model refuses)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from yarl import URL

from streamapp.core.models import AffinityQuery, EntityId
from streamapp.http.errors import HTTPError
from streamapp.http.request_input import encode_segment, fill_path, parse_k, query_pairs


@pytest.mark.parametrize(("raw", "k"), [(None, 10), ("1", 1), ("7", 7), ("1000", 1000), ("01", 1)])
def test_k_in_ascii_digits(raw: str | None, k: int) -> None:
    assert parse_k(raw, 1000) == k


@pytest.mark.parametrize(
    "raw",
    [
        "\u00b2",  # superscript two: str.isdigit() is True, int() raises (issue 11: a 500)
        "\uff15",  # full-width five: int() takes it (issue 11: accepted)
        "\u0663",  # Arabic-Indic three
        "9" * 4301,  # over Python's int conversion limit (issue 11: a 500)
        "1" * 7,
        "",
        "0",
        "1001",
        "-1",
        "+1",
        " 1",
        "1\n",
        "1.0",
        "0x1",
        "1_0",
    ],
)
def test_anything_else_is_a_400(raw: str) -> None:
    with pytest.raises(HTTPError) as info:
        parse_k(raw, 1000)
    assert info.value.status == 400 and "ASCII digits" in info.value.message


@given(st.text(max_size=50) | st.text(alphabet="0123456789\u00b2\uff10\uff15\u0663", max_size=9))
def test_parse_k_only_raises_http_400(raw: str) -> None:
    try:
        k = parse_k(raw, 1000)
    except HTTPError as exc:
        assert exc.status == 400
    else:
        assert raw.isascii() and raw.isdigit() and 1 <= k <= 1000


ROUTES = [
    "/affinity/{user_id}/{seller_id}",
    "/users/{user_id}/top-sellers",
    "/users/{user_id}",
    "/sellers/{seller_id}",
]
entity_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f")
    | st.sampled_from(list("/.%?#& -+\\~")),
    min_size=1,
    max_size=20,
).filter(lambda t: all(ord(c) >= 0x20 for c in t))
SPECIAL = ["/", ".", "..", "%", "%2F", "?", "#", " ", "a/../b", "é", "日本", "-", "~", "+", "..."]


def resolve(path: str) -> dict[str, str] | None:
    """What the worker's router (views.py's routes on faust's aiohttp app) matches for a raw
    request path."""
    from streamapp.app import app

    web_app = app.web.web_app

    async def run() -> dict[str, str] | None:
        match = await web_app.router.resolve(make_mocked_request("GET", path, app=web_app))
        if match.http_exception is not None:
            return None
        return {"route": match.route.resource.canonical, **match}

    return asyncio.run(run())


@pytest.mark.parametrize("user", SPECIAL)
@pytest.mark.parametrize("template", ROUTES)
def test_forwarded_paths_match_the_same_route_and_ids(template: str, user: str) -> None:
    values = {"user_id": user, "seller_id": f"s{user}"}
    path = fill_path(template, values)
    url = URL("http://127.0.0.1:1").with_path(path, encoded=True)
    assert url.raw_path == path  # no normalisation of dot segments on the sending side
    wanted = {k: v for k, v in values.items() if "{" + k + "}" in template}
    assert resolve(path) == {"route": template, **wanted}


@given(user=entity_ids, seller=entity_ids)
def test_any_valid_id_survives_a_forward(user: str, seller: str) -> None:
    TypeAdapter(EntityId).validate_python(user)  # the ids the API accepts
    path = fill_path(ROUTES[0], {"user_id": user, "seller_id": seller})
    assert path.isascii() and path.count("/") == 3
    assert resolve(path) == {"route": ROUTES[0], "user_id": user, "seller_id": seller}


def test_segments_encode_dots_and_reserved_characters() -> None:
    assert encode_segment("..") == "%2E%2E"
    assert encode_segment("a/b?c#d%e f") == "a%2Fb%3Fc%23d%25e%20f"
    assert encode_segment("é") == "%C3%A9"
    assert encode_segment("plain-id_1~") == "plain-id_1~"


def test_k_given_twice_is_a_400() -> None:
    from streamapp.http.errors import HTTPError
    from streamapp.http.request_input import parse_k

    assert parse_k([], 100) == 10 and parse_k(["7"], 100) == 7
    with pytest.raises(HTTPError) as caught:
        parse_k(["1", "2"], 100)
    assert caught.value.status == 400


@pytest.mark.parametrize("path", ["/affinity/%FF%FE/s1", "/users/%C3%28/top-sellers"])
def test_a_path_that_is_not_utf8_is_a_400(path: str) -> None:
    from streamapp.http.errors import HTTPError
    from streamapp.http.request_input import check_path_utf8

    with pytest.raises(HTTPError) as caught:
        check_path_utf8(path)
    assert caught.value.status == 400


@pytest.mark.parametrize("path", ["/affinity/%25FF%25FE/s1", "/affinity/%C3%BC/s%2F1?k=%FF"])
def test_a_utf8_path_passes(path: str) -> None:
    from streamapp.http.request_input import check_path_utf8

    check_path_utf8(path)


# -- the bulk body's fast path ---------------------------------------------------------------
_ids = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["", "u1", "a" * 256, "a" * 257, "x\x00y", "tab\t", "del\x7f", "é-ü", "🙂"]),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)
_pairs = st.dictionaries(
    st.sampled_from(["user_id", "seller_id", "extra", "USER_ID"]), _ids, max_size=4
)
_bodies = st.one_of(
    st.fixed_dictionaries({"pairs": st.lists(st.one_of(_pairs, _ids), max_size=6)}),
    st.dictionaries(st.sampled_from(["pairs", "more"]), st.lists(_pairs, max_size=3)),
    st.lists(_pairs, max_size=2),
    _ids,
)


def _by_model(body: bytes) -> list[tuple[str, str]] | None:
    try:
        query = AffinityQuery.model_validate_json(body)
    except ValidationError:
        return None
    return [(p.user_id, p.seller_id) for p in query.pairs]


@settings(max_examples=1_500, deadline=None)
@given(body=_bodies, raw=st.booleans())
def test_the_fast_path_accepts_only_what_the_model_accepts_and_reads_the_same(body, raw) -> None:
    data = json.dumps(body, ensure_ascii=raw).encode()
    fast = query_pairs(data)
    if fast is not None:
        assert fast == _by_model(data)


@pytest.mark.parametrize(
    "body",
    [
        b'{"pairs": [{"user_id": "u", "seller_id": "s"}]}',
        b'{"pairs": []}',
        '{"pairs": [{"seller_id": "\u00e9\u00e8", "user_id": "\U0001f642"}]}'.encode(),
        b'{"pairs": [{"user_id": "a", "user_id": "b", "seller_id": "c"}]}',
        b'{"pairs": [{"user_id": "' + b"a" * 256 + b'", "seller_id": "s"}]}',
    ],
)
def test_plainly_valid_bodies_take_the_fast_path(body: bytes) -> None:
    assert query_pairs(body) is not None
    assert query_pairs(body) == _by_model(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"pairs": [{"user_id": "u"}]}',
        b'{"pairs": [{"user_id": "u", "seller_id": "s", "x": 1}]}',
        b'{"pairs": [{"user_id": "", "seller_id": "s"}]}',
        b'{"pairs": [{"user_id": "a\\u0000", "seller_id": "s"}]}',
        b'{"pairs": [{"user_id": "\\ud800", "seller_id": "s"}]}',
        b'{"pairs": [{"user_id": 5, "seller_id": "s"}]}',
        b'{"pairs": [{"user_id": "' + b"a" * 257 + b'", "seller_id": "s"}]}',
        b'{"pairs": {}}',
        b'{"pairs": [], "more": 1}',
        b"[]",
    ],
)
def test_anything_else_goes_to_the_model(body: bytes) -> None:
    assert query_pairs(body) is None
