"""Source records -> validated messages, or a dead letter that says why not.

Bad records are a stream of their own: every function here returns either the
accepted value or a `Rejected` reason, never raises on input data.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from streamapp.core.models import (
    KIND_INDEX,
    MAX_ID_LENGTH,
    OTHER_INDEX,
    DeadLetter,
    InteractionMessage,
    RoutedInteraction,
    Seller,
    User,
    kind_of,
)
from streamapp.core.pair_state import Interaction
from streamapp.core.times import (
    EVENT_RANGE_TEXT,
    from_micros,
    in_calendar,
    in_event_range,
    to_micros,
)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rejected:
    reason: str


class Record(NamedTuple):
    """The parts of a Kafka record that parsing and dead letters need. (A tuple: one is made
    per source record, and a frozen dataclass's __init__ cost 4 % of ingest's CPU.)"""

    topic: str
    partition: int
    offset: int
    timestamp_us: int | None
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Delete:
    """A tombstone (null value) on a profile topic."""

    id: str


def describe(exc: ValidationError, limit: int = 3) -> str:
    """A short, stable one-line reason from a pydantic error."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "invalid message: " + "; ".join(parts)


def _validate(model: type[M], value: bytes, max_bytes: int) -> M | Rejected:
    if len(value) > max_bytes:
        return Rejected(f"message too large: {len(value)} bytes (limit {max_bytes})")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return Rejected("not valid JSON: " + exc.errors()[0]["msg"])
        if any(e["type"] == "model_type" for e in exc.errors()):
            return Rejected("invalid message: not a JSON object")
        return Rejected(describe(exc))
    except UnicodeDecodeError:
        return Rejected("not UTF-8")


def parse_interaction(record: Record, max_bytes: int) -> RoutedInteraction | Rejected:
    """An `interactions` record -> the routed form (kind mapped, event time fixed)."""
    if record.value is None:
        return Rejected("null value: an interaction must be a JSON object")
    msg = _validate(InteractionMessage, record.value, max_bytes)
    if isinstance(msg, Rejected):
        return msg
    if msg.on is not None:
        on_us = to_micros(msg.on)  # in range: the model checks it
    elif record.timestamp_us is not None:
        if not in_event_range(record.timestamp_us):
            return Rejected(
                "no event time: field 'on' is missing and the record timestamp "
                f"({record.timestamp_us} us) lies outside {EVENT_RANGE_TEXT}"
            )
        on_us = record.timestamp_us
    else:
        return Rejected("no event time: field 'on' is missing and the record has no timestamp")
    return RoutedInteraction(
        id=msg.id,
        user_id=msg.user_id,
        seller_id=msg.seller_id,
        kind=kind_of(msg.interaction_kind),
        on_us=on_us,
        src_partition=record.partition,
        src_offset=record.offset,
    )


def _profile(model: type[M], record: Record, max_bytes: int, keyed: bool) -> M | Delete | Rejected:
    key = None
    if record.key is not None:
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            return Rejected("key is not UTF-8")
    if record.value is None:
        if not key:
            return Rejected("null value without a key: nothing to delete")
        return Delete(key)
    msg = _validate(model, record.value, max_bytes)
    if isinstance(msg, Rejected):
        return msg
    # A user's profile must sit in the partition its key hashes to, beside the user's pairs.
    if keyed and key != msg.id:  # type: ignore[attr-defined]
        return Rejected(f"key {key!r} must equal the id {msg.id!r}")  # type: ignore[attr-defined]
    return msg


def parse_user(record: Record, max_bytes: int) -> User | Delete | Rejected:
    return _profile(User, record, max_bytes, keyed=True)


def parse_seller(record: Record, max_bytes: int) -> Seller | Delete | Rejected:
    # Sellers live in a global table, so their key does not decide where they are read.
    return _profile(Seller, record, max_bytes, keyed=False)


# A dead letter must always fit in one Kafka record (the broker's default max.message.bytes
# is 1 MB, and the DLQ record also carries the source key): the default leaves room for both.
DEFAULT_DEAD_LETTER_BYTES = 512 * 1024
MIN_DEAD_LETTER_BYTES = 16 * 1024  # room for the fixed fields, a capped reason and some bytes
MAX_ERROR_CHARS = 500  # reasons can quote the input (a key's repr): capped, never the budget

# How pydantic's JSON writer escapes bytes inside a string: these take two characters...
_SHORT_ESCAPES = b'"\\\b\f\n\r\t'
# ...and the other control characters six (\u00XX). Everything else is written as is.
_LONG_ESCAPES = bytes(c for c in range(0x20) if c not in _SHORT_ESCAPES)


def _json_text_size(raw: bytes) -> int:
    """Bytes that valid UTF-8 `raw` takes inside a JSON string (quotes excluded)."""
    short = len(raw) - len(raw.translate(None, _SHORT_ESCAPES))
    long = len(raw) - len(raw.translate(None, _LONG_ESCAPES))
    return len(raw) + short + 5 * long


def _base64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class Kept:
    """Original bytes as they go into a dead letter: text, its encoding, and when they had to
    be cut, the original size and SHA-256 digest."""

    text: str
    encoding: Literal["utf-8", "base64"]
    truncated: bool = False
    size: int | None = None
    sha256: str | None = None


def _as_text(raw: bytes) -> tuple[Literal["utf-8", "base64"], int]:
    """The more compact encoding of `raw` in JSON and its size: UTF-8 text unless escaping
    makes it bigger than base64 (or it is not UTF-8)."""
    b64 = _base64_size(len(raw))
    if _is_utf8(raw):
        text = _json_text_size(raw)
        if text <= b64:
            return "utf-8", text
    return "base64", b64


def _text_prefix(raw: bytes, room: int) -> bytes:
    """The longest prefix of UTF-8 `raw` that is whole characters and escapes to <= room."""
    low, high = 0, min(len(raw), room)  # escaping never shrinks, so `room` bytes is the most
    while low < high:  # binary search: the escaped size grows with the prefix
        mid = (low + high + 1) // 2
        if _json_text_size(raw[:mid]) <= room:
            low = mid
        else:
            high = mid - 1
    while 0 < low < len(raw) and raw[low] & 0xC0 == 0x80:
        low -= 1  # do not cut a character: back to the start of the one that was cut
    return raw[:low]


def keep(raw: bytes, room: int) -> Kept:
    """`raw` in at most `room` bytes of JSON string content: whole when it fits, else its
    longest prefix in the same encoding, with the original size and digest."""
    encoding, size = _as_text(raw)
    if size <= room:
        text = raw.decode("utf-8") if encoding == "utf-8" else base64.b64encode(raw).decode()
        return Kept(text, encoding)
    if encoding == "utf-8":
        text = _text_prefix(raw, room).decode("utf-8")
    else:
        text = base64.b64encode(raw[: max(room, 0) // 4 * 3]).decode()
    return Kept(text, encoding, True, len(raw), hashlib.sha256(raw).hexdigest())


def _letter(record: Record, error: str, key: Kept | None, value: Kept | None) -> DeadLetter:
    ts = record.timestamp_us
    return DeadLetter(
        error=error,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        # A timestamp outside the calendar is left out (the reason names it) rather than shown
        # clamped to a moment it is not.
        timestamp=from_micros(ts) if ts is not None and in_calendar(ts) else None,
        key=key.text if key else None,
        key_encoding=key.encoding if key else None,
        key_truncated=key.truncated if key else False,
        key_size=key.size if key else None,
        key_sha256=key.sha256 if key else None,
        value=value.text if value else None,
        value_encoding=value.encoding if value else None,
        value_truncated=value.truncated if value else False,
        value_size=value.size if value else None,
        value_sha256=value.sha256 if value else None,
    )


def dead_letter(
    record: Record, reason: str, max_bytes: int = DEFAULT_DEAD_LETTER_BYTES
) -> DeadLetter:
    """The dead letter of `record`, whose JSON (model_dump_json) is at most `max_bytes`
    (when that is at least MIN_DEAD_LETTER_BYTES): key and value in their more compact
    encoding, cut to fit when they must, with size and digest recorded. Never raises."""
    error = reason if len(reason) <= MAX_ERROR_CHARS else reason[:MAX_ERROR_CHARS] + "..."
    # The letter with empty key and value and the largest truncation fields: what is left
    # of the budget is for the key and value text.
    widest = Kept("", "base64", True, 10**19, "0" * 64)
    overhead = len(_letter(record, error, widest, widest).model_dump_json().encode())
    room = max_bytes - overhead
    key_need = _as_text(record.key)[1] if record.key is not None else 0
    value_need = _as_text(record.value)[1] if record.value is not None else 0
    while True:
        if key_need + value_need <= room:
            key_room, value_room = key_need, value_need
        else:  # a small one is kept whole; two big ones share the room
            key_room = min(key_need, max(room // 2, room - value_need))
            value_room = max(room - key_room, 0)
        letter = _letter(
            record,
            error,
            keep(record.key, key_room) if record.key is not None else None,
            keep(record.value, value_room) if record.value is not None else None,
        )
        over = len(letter.model_dump_json().encode()) - max_bytes
        if over <= 0 or room <= 0:
            return letter  # the size model above is exact; this guards a serializer change
        room -= over


# -- the hot path's parser ---------------------------------------------------------------
# Accepts the common well-formed record in a few microseconds; anything it is not sure of
# goes to parse_interaction, so both accept exactly the same records with the same reasons
# (tests/unit/test_parsing.py checks this on generated records).
_PLAIN_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_FAST_YEARS = range(1971, 9999)  # calendar edges take the careful path


def _plain_id(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def _fast(record: Record, max_bytes: int) -> Interaction | None:
    value = record.value
    if value is None or len(value) > max_bytes:
        return None
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(msg) is not dict:
        return None
    iid, user, seller, kind = (
        msg.get("id"),
        msg.get("user_id"),
        msg.get("seller_id"),
        msg.get("interaction_kind"),
    )
    if not (_plain_id(iid) and _plain_id(user) and _plain_id(seller)):
        return None
    if type(kind) is not str:
        return None
    on = msg.get("on")
    if on is None:
        if record.timestamp_us is None or not in_event_range(record.timestamp_us):
            return None  # the careful path says why
        on_us = record.timestamp_us
    else:
        if type(on) is not str or not _PLAIN_TIME.fullmatch(on):
            return None
        try:
            moment = datetime.fromisoformat(on)
        except ValueError:  # the shape of a time, not a date ("2026-13-02..."): say why there
            return None
        if moment.year not in _FAST_YEARS:
            return None
        on_us = to_micros(moment)
    return Interaction(
        iid, user, seller, KIND_INDEX.get(kind, OTHER_INDEX), on_us, record.partition, record.offset
    )


def accept_interaction(record: Record, max_bytes: int) -> Interaction | Rejected:
    """An `interactions` record -> what counting needs, or why it is refused."""
    fast = _fast(record, max_bytes)
    if fast is not None:
        return fast
    result = parse_interaction(record, max_bytes)
    if isinstance(result, Rejected):
        return result
    return Interaction(
        result.id,
        result.user_id,
        result.seller_id,
        KIND_INDEX[result.kind.value],
        result.on_us,
        record.partition,
        record.offset,
    )
