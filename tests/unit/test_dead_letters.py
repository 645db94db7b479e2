"""Dead letters always fit their size budget and keep the original bytes exactly when whole."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pydantic_core
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamapp.core.config import load_settings
from streamapp.core.models import DeadLetter
from streamapp.core.parsing import (
    DEFAULT_DEAD_LETTER_BYTES,
    MIN_DEAD_LETTER_BYTES,
    Record,
    dead_letter,
)


def rec(value: bytes | None, key: bytes | None = b"k", timestamp_us: int | None = 0) -> Record:
    return Record("interactions", 3, 42, timestamp_us, key, value)


def original(text: str | None, encoding: str | None) -> bytes | None:
    if text is None:
        return None
    return text.encode() if encoding == "utf-8" else base64.b64decode(text, validate=True)


def json_size(text: str) -> int:
    """Independent oracle: bytes of `text` as a JSON string's content, by pydantic's writer."""
    return len(pydantic_core.to_json(text)) - 2


def check_kept(
    raw: bytes | None,
    text: str | None,
    encoding: str | None,
    truncated: bool,
    size: int | None,
    sha256: str | None,
) -> None:
    if raw is None:
        assert (text, encoding, truncated, size, sha256) == (None, None, False, None, None)
        return
    kept = original(text, encoding)
    assert kept is not None
    if not truncated:
        assert kept == raw  # exactly the original bytes
        assert size is None and sha256 is None
        b64 = len(base64.b64encode(raw))
        if encoding == "utf-8":
            assert json_size(raw.decode()) <= b64
        else:  # base64 only when text is impossible or bigger
            with contextlib.suppress(UnicodeDecodeError):
                assert json_size(raw.decode("utf-8")) > b64
    else:
        assert raw.startswith(kept) and len(kept) < len(raw)
        assert size == len(raw)
        assert sha256 == hashlib.sha256(raw).hexdigest()


# Values up to a few MB: a drawn pattern repeated (hypothesis itself draws small byte strings),
# sometimes followed by random bytes, so escaping-heavy, binary and text values all get large.
big_bytes = st.builds(
    lambda chunk, n, tail: (chunk * (n // len(chunk) + 1))[:n] + tail,
    st.binary(min_size=1, max_size=40)
    | st.sampled_from([b"\x01", b'"', b"\\", b"\n", "é".encode(), b"a", b"\xff", "日".encode()]),
    st.integers(0, 3_000_000),
    st.binary(max_size=50),
)
any_bytes = st.binary(max_size=2000) | big_bytes


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.none() | any_bytes,
    value=st.none() | any_bytes,
    budget=st.sampled_from([DEFAULT_DEAD_LETTER_BYTES, MIN_DEAD_LETTER_BYTES])
    | st.integers(MIN_DEAD_LETTER_BYTES, 1_100_000),
    reason=st.text(min_size=1, max_size=3000),
)
@example(b"\x01" * 1_000_000, b"\x01" * 3_000_000, MIN_DEAD_LETTER_BYTES, "x" * 3000)
@example(b"\xff" * 1_000_000, "é\n".encode() * 1_000_000, DEFAULT_DEAD_LETTER_BYTES, "\x00" * 900)
@example(b"k", b'"' * 600_000, DEFAULT_DEAD_LETTER_BYTES, "r")
def test_letter_fits_the_budget_and_keeps_the_bytes(
    key: bytes | None, value: bytes | None, budget: int, reason: str
) -> None:
    letter = dead_letter(rec(value, key), reason, budget)
    raw = letter.model_dump_json().encode()
    assert len(raw) <= budget
    again = DeadLetter.model_validate_json(raw)
    assert again == letter
    check_kept(
        value,
        again.value,
        again.value_encoding,
        again.value_truncated,
        again.value_size,
        again.value_sha256,
    )
    check_kept(
        key, again.key, again.key_encoding, again.key_truncated, again.key_size, again.key_sha256
    )
    assert again.error and reason.startswith(again.error.removesuffix("..."))


def test_a_megabyte_of_control_bytes_fits() -> None:
    """Issue 11: 1,000,000 x \\x01 was a 6 MB letter (JSON escaping) and was lost."""
    value = b"\x01" * 1_000_000
    letter = dead_letter(rec(value), "message too large: 1000000 bytes (limit 65536)")
    assert len(letter.model_dump_json().encode()) <= DEFAULT_DEAD_LETTER_BYTES
    assert letter.value_encoding == "base64" and letter.value_truncated
    assert letter.value_size == 1_000_000
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
    assert value.startswith(base64.b64decode(letter.value or ""))
    assert len(base64.b64decode(letter.value or "")) > 300_000  # most of the budget is used
    assert (letter.key, letter.key_encoding, letter.key_truncated) == ("k", "utf-8", False)


@pytest.mark.parametrize(
    ("value", "encoding"),
    [
        (b'{"id": "x"}', "utf-8"),
        ("naïve 日本".encode(), "utf-8"),
        (b"\x01\x02\x03", "base64"),  # \u0001 x 3 is 18 bytes, base64 4
        (b"\xff\xfe", "base64"),
        (b"", "utf-8"),
    ],
)
def test_the_more_compact_encoding_is_chosen(value: bytes, encoding: str) -> None:
    letter = dead_letter(rec(value), "bad")
    assert letter.value_encoding == encoding and not letter.value_truncated
    assert original(letter.value, letter.value_encoding) == value


def test_text_is_cut_at_a_character_boundary() -> None:
    value = "é".encode() * 400_000  # 800 kB of two-byte characters
    letter = dead_letter(rec(value), "bad")
    assert letter.value_encoding == "utf-8" and letter.value_truncated
    assert set(letter.value or "") == {"é"}


def test_timestamp_outside_the_calendar_is_left_out() -> None:
    assert dead_letter(rec(b"x", timestamp_us=2**62), "bad").timestamp is None
    assert dead_letter(rec(b"x", timestamp_us=0), "bad").timestamp is not None


def test_budget_setting_defaults_to_the_function_default() -> None:
    assert load_settings({}).dead_letter_max_bytes == DEFAULT_DEAD_LETTER_BYTES
    env = {"STREAMAPP_DEAD_LETTER_MAX_BYTES": "100000"}
    assert load_settings(env).dead_letter_max_bytes == 100_000
