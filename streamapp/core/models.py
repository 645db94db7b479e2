"""Message contracts: every JSON that crosses a topic or the HTTP API.

schemas/ is generated from these models (`python -m streamapp.schemas`), and a test
keeps the two in sync.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from streamapp.core.times import EVENT_RANGE_TEXT, in_event_range, to_micros

MAX_ID_LENGTH = 256
MAX_CATEGORIES = 1_000


class InteractionKind(StrEnum):
    LIKE = "LIKE"
    VIEW = "VIEW"
    PURCHASE = "PURCHASE"
    OTHER = "OTHER"


# Index order of per-kind arrays in pair state and weights.
KIND_ORDER: tuple[InteractionKind, ...] = (
    InteractionKind.LIKE,
    InteractionKind.VIEW,
    InteractionKind.PURCHASE,
    InteractionKind.OTHER,
)
KIND_INDEX: dict[str, int] = {kind.value: i for i, kind in enumerate(KIND_ORDER)}
OTHER_INDEX = KIND_INDEX["OTHER"]


def kind_of(text: str) -> InteractionKind:
    """The original's rule: LIKE/VIEW/PURCHASE exactly (case-sensitive), else OTHER."""
    return KIND_ORDER[KIND_INDEX.get(text, OTHER_INDEX)]


def _only_str(value: Any) -> Any:
    # Pydantic's lax mode would turn a number into a datetime; the contract says ISO-8601.
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string")
    return value


# An entity id: non-empty, bounded, printable (control characters would break keys).
EntityId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
Category = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]


def _in_range(value: datetime | None) -> datetime | None:
    # Checked after conversion to UTC: "9999-12-31T23:30:00-01:00" is a valid datetime whose
    # UTC instant lies in year 10000, which no later formatting could represent.
    if value is not None and not in_event_range(to_micros(value)):
        raise ValueError(f"must lie in {EVENT_RANGE_TEXT} after conversion to UTC")
    return value


# Lax inside: after the before-validator pydantic parses in Python mode, where strict
# would refuse the ISO string.
EventTime = Annotated[
    Annotated[datetime, Strict(False)] | None,
    BeforeValidator(_only_str),
    AfterValidator(_in_range),
]


def _strict_model(title: str) -> ConfigDict:
    # Unknown fields are ignored (producers may send more); present ones are typed strictly.
    return ConfigDict(title=title, strict=True, extra="ignore")


class InteractionMessage(BaseModel):
    """A value on the `interactions` topic."""

    model_config = _strict_model("InteractionMessage")

    id: EntityId = Field(description="Unique interaction id; the dedupe key.")
    user_id: EntityId
    seller_id: EntityId
    # Any length: the contract counts every other string as OTHER, and none is kept.
    interaction_kind: str = Field(
        description="LIKE, VIEW or PURCHASE exactly; any other string counts as OTHER."
    )
    on: EventTime = Field(
        default=None,
        description=(
            "Event time, ISO-8601 (UTC when no offset); missing: the record timestamp. "
            f"Valid range after conversion to UTC: {EVENT_RANGE_TEXT}; "
            "anything outside it (also a record timestamp used instead) is dead-lettered."
        ),
        json_schema_extra={
            "formatMinimum": "1970-01-01T00:00:00Z",
            "formatMaximum": "9999-12-30T23:59:59.999999Z",
        },
    )


class User(BaseModel):
    """A value on the `users` topic (key: the user id; a null value deletes)."""

    model_config = _strict_model("User")

    id: EntityId
    age: Annotated[int, Field(ge=0, le=200)] | None = None
    favorite_categories: Annotated[list[Category], Field(max_length=MAX_CATEGORIES)] = []


class Seller(BaseModel):
    """A value on the `sellers` topic (key: the seller id; a null value deletes)."""

    model_config = _strict_model("Seller")

    id: EntityId
    categories: Annotated[list[Category], Field(max_length=MAX_CATEGORIES)] = []


class RoutedInteraction(BaseModel):
    """An accepted interaction on the app's internal re-keying topic (key: the user id)."""

    model_config = ConfigDict(title="RoutedInteraction", extra="ignore")

    id: str
    user_id: str
    seller_id: str
    kind: InteractionKind
    on_us: int = Field(description="Event time, microseconds since the epoch.")
    src_partition: int = Field(description="Partition of `interactions` it was read from.")
    src_offset: int = Field(
        description="Offset in that partition: the record's identity, so a re-sent copy is "
        "recognised whatever its timestamps."
    )


class KindCounts(BaseModel):
    model_config = ConfigDict(title="KindCounts")

    LIKE: int = 0
    VIEW: int = 0
    PURCHASE: int = 0
    OTHER: int = 0


class FeatureVector(BaseModel):
    """The features of one user-seller pair as of a moment."""

    model_config = ConfigDict(title="FeatureVector")

    id: str = Field(
        description=(
            '"<user_id>-<seller_id>", with "\\" written "\\\\" and "-" written "\\-" inside '
            'each id so that no two pairs share an id: ("a-b", "c") is "a\\-b-c", ("a", "b-c") '
            'is "a-b\\-c". Ids without "-" and "\\" appear as they are.'
        )
    )
    user_id: str
    seller_id: str
    number_of_interactions: int
    interactions_by_kind: KindCounts
    interactions_1d: int
    interactions_7d: int
    interactions_30d: int
    first_interaction_at: datetime | None
    last_interaction_at: datetime | None
    favorites_match: bool
    category_overlap: int
    category_jaccard: float
    user_seller_score: float
    as_of: datetime


class AffinityUpdate(FeatureVector):
    """A value on `affinity-updates` (key: the user id): the pair's vector after a change.

    By default (STREAMAPP_UPDATES=batch) at most one per touched pair per processing
    batch, covering every interaction the batch counted for the pair; with
    STREAMAPP_UPDATES=each, one per counted interaction. After a crash an update may be
    published again (at least once): keep the latest per pair by `as_of`, and dedupe by
    interaction id where coverage counts matter."""

    model_config = ConfigDict(title="AffinityUpdate")

    interaction_id: str = Field(description="The last interaction this update covers.")
    interactions_covered: int = Field(
        description="How many interactions this update covers (1 in 'each' mode). At least "
        "once: after a crash an interaction can be covered by a second update."
    )
    interaction_ids: list[str] | None = Field(
        description="The ids of those interactions in counting order, or null when there "
        "are more than 64."
    )


class DeadLetter(BaseModel):
    """A value on `<source>-dlq`: a source message that could not be accepted."""

    model_config = ConfigDict(title="DeadLetter")

    error: str
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None = None
    key: str | None
    key_encoding: Literal["utf-8", "base64"] | None
    key_truncated: bool = Field(
        default=False, description="The key was cut to keep the letter within its size budget."
    )
    key_size: int | None = Field(
        default=None, description="When truncated: the original key's size in bytes."
    )
    key_sha256: str | None = Field(
        default=None, description="When truncated: SHA-256 of the original key, hex."
    )
    value: str | None = Field(
        description=(
            "The original bytes: UTF-8 text when that is valid and not larger in JSON than "
            "base64, else base64; a prefix of them when value_truncated."
        )
    )
    value_encoding: Literal["utf-8", "base64"] | None
    value_truncated: bool = Field(
        default=False,
        description="The value was cut to keep the letter within its size budget "
        "(STREAMAPP_DEAD_LETTER_MAX_BYTES).",
    )
    value_size: int | None = Field(
        default=None, description="When truncated: the original value's size in bytes."
    )
    value_sha256: str | None = Field(
        default=None, description="When truncated: SHA-256 of the original value, hex."
    )


class PairRef(BaseModel):
    model_config = ConfigDict(title="PairRef", strict=True, extra="forbid")

    user_id: EntityId
    seller_id: EntityId


class AffinityQuery(BaseModel):
    """Body of POST /affinity/query."""

    model_config = ConfigDict(title="AffinityQuery", strict=True, extra="forbid")

    pairs: list[PairRef]


class AffinityQueryResult(BaseModel):
    model_config = ConfigDict(title="AffinityQueryResult")

    results: list[FeatureVector]


class RankedSeller(BaseModel):
    model_config = ConfigDict(title="RankedSeller")

    seller_id: str
    user_seller_score: float
    number_of_interactions: int


class TopSellers(BaseModel):
    model_config = ConfigDict(title="TopSellers")

    user_id: str
    as_of: datetime = Field(description="The moment the scores were computed for.")
    sellers: list[RankedSeller] = Field(description="Best first.")


class ErrorBody(BaseModel):
    model_config = ConfigDict(title="Error")

    error: str
