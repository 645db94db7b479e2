"""Source records -> validated messages, or a dead letter that says why not.

Bad records are a stream of their own: every function here returns either the
accepted value or a `Rejected` reason, never raises on input data.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from streamapp.models import (
    EVENT_RANGE_TEXT,
    KIND_INDEX,
    MAX_ID_LENGTH,
    OTHER_INDEX,
    DeadLetter,
    InteractionMessage,
    RoutedInteraction,
    Seller,
    User,
    from_micros,
    in_event_range,
    kind_of,
    to_micros,
)
from streamapp.pair_state import Interaction

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class Record:
    """The parts of a Kafka record that parsing and dead letters need."""

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


def _as_text(raw: bytes | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(record: Record, reason: str) -> DeadLetter:
    key, key_encoding = _as_text(record.key)
    value, value_encoding = _as_text(record.value)
    return DeadLetter(
        error=reason,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=from_micros(record.timestamp_us) if record.timestamp_us is not None else None,
        key=key,
        key_encoding=key_encoding,
        value=value,
        value_encoding=value_encoding,
    )


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
    if type(kind) is not str or len(kind) > MAX_ID_LENGTH:
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
