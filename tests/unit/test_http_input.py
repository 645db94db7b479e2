"""Request input: `k` parsing (never a 5xx)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamapp.errors import HTTPError
from streamapp.http_input import parse_k


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
