"""Worker-to-worker requests are signed; client-supplied internal headers are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from streamapp.core.config import load_settings
from streamapp.core.times import MAX_EVENT_US
from streamapp.http.errors import HTTPError
from streamapp.http.internal_auth import (
    AS_OF,
    MAX_SKEW_S,
    REPLICA_ONLY,
    ROUTED,
    SIGNATURE,
    Internal,
    derive_key,
    sign,
    verify,
)

KEY = derive_key("", "streamapp", "")
NOW = 1_800_000_000.0
PATH = "/affinity/%2E/s%2Fdot"
AS_OF_US = 1_800_000_000_000_000


def check(headers: dict[str, str], method: str = "POST", path: str = PATH, now: float = NOW):
    return verify(KEY, method, path, CIMultiDict(headers), now)


def test_client_requests_pass_untouched() -> None:
    assert check({"Authorization": "Bearer x", "X-Other": "1"}) is None


def test_a_signed_request_verifies() -> None:
    headers = sign(KEY, "POST", PATH, AS_OF_US, NOW)
    assert check(headers) == Internal(AS_OF_US)
    assert check({k.lower(): v for k, v in headers.items()}) == Internal(AS_OF_US)
    assert check(sign(KEY, "GET", PATH, None, NOW), "GET") == Internal(None)
    assert check(headers, now=NOW + MAX_SKEW_S) == Internal(AS_OF_US)


@pytest.mark.parametrize(
    "headers",
    [
        {ROUTED: "1"},  # what workers sent before: now anyone's guess
        {AS_OF: "253402300800000000"},  # issue 11: a 500
        {ROUTED: "1", AS_OF: "253402300800000000"},  # issue 11: a 500
        {ROUTED: str(int(NOW)), SIGNATURE: "0" * 64},
        {ROUTED: "", SIGNATURE: ""},
        {ROUTED: "\uff11", SIGNATURE: "a" * 64},
        {SIGNATURE: "zz"},
        {REPLICA_ONLY: "0"},  # a client asking for a replica's answer
    ],
)
def test_unsigned_or_forged_internal_headers_are_a_400(headers: dict[str, str]) -> None:
    with pytest.raises(HTTPError) as info:
        check(headers)
    assert info.value.status == 400


def test_a_request_for_a_replica_answer_carries_the_requesters_age() -> None:
    """REPLICA_ONLY is outside the signature (the previous release verifies such requests
    as before), but only honoured on a signed request and never trusted to be a number."""
    signed = sign(KEY, "GET", PATH, None, NOW)
    assert check({**signed, REPLICA_ONLY: "2500"}, "GET") == Internal(None, 2500)
    assert check(signed, "GET") == Internal(None, None)
    for bad in ("", "-1", "1.5", "x", "1" * 13):
        with pytest.raises(HTTPError) as info:
            check({**signed, REPLICA_ONLY: bad}, "GET")
        assert info.value.status == 400


def tampered() -> list[tuple[str, object]]:
    good = sign(KEY, "POST", PATH, AS_OF_US, NOW)
    return [
        ("as_of changed", {**good, AS_OF: str(AS_OF_US + 1)}),
        ("as_of removed", {k: v for k, v in good.items() if k != AS_OF}),
        ("time changed", {**good, ROUTED: str(int(NOW) + 1)}),
        ("other key", sign(derive_key("another-secret-123", "x", ""), "POST", PATH, AS_OF_US, NOW)),
    ]


@pytest.mark.parametrize(("what", "headers"), tampered())
def test_tampered_signatures_are_a_400(what: str, headers: dict[str, str]) -> None:
    with pytest.raises(HTTPError) as info:
        check(headers)
    assert info.value.status == 400, what


def test_signature_binds_method_and_path() -> None:
    headers = sign(KEY, "POST", PATH, None, NOW)
    for method, path in (("GET", PATH), ("POST", "/affinity/./s/dot"), ("POST", "/x")):
        with pytest.raises(HTTPError):
            check(headers, method, path)


def test_stale_signatures_are_a_400() -> None:
    headers = sign(KEY, "GET", PATH, None, NOW)
    with pytest.raises(HTTPError) as info:
        check(headers, "GET", now=NOW + MAX_SKEW_S + 1)
    assert info.value.status == 400


@pytest.mark.parametrize("as_of", [MAX_EVENT_US + 1, 253_402_300_800_000_000, 10**19 - 1])
def test_signed_as_of_is_still_range_checked(as_of: int) -> None:
    with pytest.raises(HTTPError) as info:
        check(sign(KEY, "POST", PATH, as_of, NOW))
    assert info.value.status == 400 and "1970-01-01" in info.value.message


@given(st.dictionaries(st.sampled_from([ROUTED, AS_OF, SIGNATURE]), st.text(max_size=80)))
def test_any_header_values_give_none_internal_or_a_400(headers: dict[str, str]) -> None:
    try:
        result = check(headers)
    except HTTPError as exc:
        assert exc.status == 400
    else:
        assert result is None and not headers


def test_keys_per_deployment() -> None:
    default = derive_key("", "app", "token-123")
    assert default == derive_key("", "app", "token-123")
    assert default != derive_key("", "app2", "token-123")
    assert default != derive_key("", "app", "token-124")
    assert derive_key("s" * 16, "app", "t") == derive_key("s" * 16, "other", "u")
    assert default != derive_key("s" * 16, "app", "token-123")


def test_secret_setting() -> None:
    assert load_settings({}).internal_secret == ""
    secret = "0123456789abcdef"
    assert load_settings({"STREAMAPP_INTERNAL_SECRET": secret}).internal_secret == secret
    with pytest.raises(ValueError, match="STREAMAPP_INTERNAL_SECRET"):
        load_settings({"STREAMAPP_INTERNAL_SECRET": "short"})
