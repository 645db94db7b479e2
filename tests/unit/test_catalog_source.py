"""Issue 22: a profile catalog notices that its topic is not the one it was built from
(deleted and recreated, a reset broker), drops its profiles and reads the topic again; a
serving process reading the catalog as a secondary sees the drop. No broker here: the
topic-id lookup is replaced, and its wire format is checked against bytes."""

from __future__ import annotations

import json
import logging
import uuid
from io import BytesIO
from pathlib import Path

import pytest

from streamapp.core.config import load_settings
from streamapp.core.parsing import Record
from streamapp.kafka import profile_catalog
from streamapp.kafka.profile_catalog import (
    OFFSETS_KEY,
    SOURCE_KEY,
    ProfileCatalog,
    SourceTopic,
    profile_catalogs,
    source_changed,
)
from streamapp.kafka.topic_ids import (
    MetadataRequest_v10,
    MetadataRequest_v12,
    MetadataResponse_v10,
    MetadataResponse_v12,
    TopicIdsRequest,
    ids_of,
)
from streamapp.serving.secondaries import CatalogReader

OLD_ID, NEW_ID = "a" * 32, "b" * 32


# -- the decision --------------------------------------------------------------------------
def test_the_same_topic_is_kept() -> None:
    built = SourceTopic(OLD_ID, 4)
    assert source_changed(built, SourceTopic(OLD_ID, 4), {0: 5, 1: 0}, {0: 5, 1: 3}) is None
    # Without ids on one side or both, the other checks still pass.
    assert source_changed(SourceTopic(None, 4), SourceTopic(OLD_ID, 4), {0: 5}, {0: 9}) is None
    assert source_changed(built, SourceTopic(None, 4), {0: 5}, {0: 9}) is None
    # A catalog never built (no offsets, nothing recorded) has nothing to drop.
    assert source_changed(None, SourceTopic(OLD_ID, 4), {}, {0: 9}) is None


def test_a_recreated_topic_is_told_by_its_id_whatever_it_holds() -> None:
    built = SourceTopic(OLD_ID, 4)
    expected = f"topic id {NEW_ID}, the catalog was built from {OLD_ID}"
    # Empty now, fewer records, as many, more: the id alone tells.
    for ends in ({0: 0, 1: 0}, {0: 2, 1: 0}, {0: 5, 1: 3}, {0: 50, 1: 30}):
        assert source_changed(built, SourceTopic(NEW_ID, 4), {0: 5, 1: 3}, ends) == expected
    assert source_changed(built, SourceTopic(NEW_ID, 8), {0: 5}, {0: 50}) == expected


def test_without_ids_the_partition_count_and_the_ends_tell() -> None:
    built = SourceTopic(None, 4)
    assert source_changed(built, SourceTopic(None, 8), {0: 5}, {0: 50}) == (
        "8 partitions, the catalog was built from 4"
    )
    assert source_changed(built, SourceTopic(None, 4), {0: 5, 1: 7}, {0: 50, 1: 6}) == (
        "partition 1 ends at offset 6, the catalog had read to 7"
    )
    assert source_changed(built, SourceTopic(None, 4), {0: 5}, {}) == (
        "partition 0 ends at offset 0, the catalog had read to 5"
    )
    # The documented limit: with no ids, a recreated topic that already holds as many
    # records as before or more looks like the old one.
    assert source_changed(built, SourceTopic(None, 4), {0: 5}, {0: 5}) is None


def test_a_catalog_that_never_recorded_its_topic_is_rebuilt() -> None:
    assert source_changed(None, SourceTopic(OLD_ID, 4), {0: 5}, {0: 50}) == (
        "the catalog does not record the topic it was built from"
    )


# -- the catalog ---------------------------------------------------------------------------
def user(uid: str, favorites: list[str]) -> bytes:
    return json.dumps({"id": uid, "age": 30, "favorite_categories": favorites}).encode()


def users_catalog(tmp_path: Path) -> ProfileCatalog:
    settings = load_settings({"STREAMAPP_DATA_DIR": str(tmp_path / "data")})
    catalog, _ = profile_catalogs(settings)
    catalog.open()
    return catalog


def load(catalog: ProfileCatalog, *profiles: tuple[str, list[str]]) -> None:
    for offset, (uid, favorites) in enumerate(profiles):
        catalog.apply(Record(catalog.topic, 0, offset, None, uid.encode(), user(uid, favorites)))
    assert catalog.db is not None
    catalog.db.put(OFFSETS_KEY, json.dumps({0: len(profiles), 1: 0}).encode())


def ids_answer(monkeypatch: pytest.MonkeyPatch, topic_id: str | None) -> None:
    async def topic_ids(settings: object, topics: list[str]) -> dict[str, str | None] | None:
        return None if topic_id is None else {t: topic_id for t in topics}

    monkeypatch.setattr(profile_catalog, "topic_ids", topic_ids)


async def test_a_new_topic_drops_the_profiles_and_the_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = users_catalog(tmp_path)
    ids_answer(monkeypatch, OLD_ID)
    assert await catalog.check_source(2, {0: 0, 1: 0}) is None  # the first build: recorded
    assert catalog.built_from() == SourceTopic(OLD_ID, 2)
    load(catalog, ("123", ["books"]), ("124", ["games"]))
    assert catalog.categories("123") == frozenset({"books"})  # now cached in memory too

    assert await catalog.check_source(2, {0: 2, 1: 0}) is None  # restarted, same topic
    assert catalog.get("123") is not None

    ids_answer(monkeypatch, NEW_ID)  # deleted and recreated with more records than before
    with caplog.at_level(logging.WARNING, logger=profile_catalog.log.name):
        reason = await catalog.check_source(2, {0: 7, 1: 1})
    assert reason == f"topic id {NEW_ID}, the catalog was built from {OLD_ID}"
    assert [r.getMessage() for r in caplog.records] == [
        f"users catalog: {catalog.topic} is not the topic it was built from ({reason}): "
        "dropping its profiles and reading the topic again from the beginning"
    ]
    assert catalog.get("123") is None and catalog.get("124") is None
    assert catalog.categories("123") == frozenset()  # the memory cache went too
    assert catalog._offsets() == {}  # read again from the beginning
    assert catalog.built_from() == SourceTopic(NEW_ID, 2)
    assert catalog.db is not None
    assert list(catalog.db.keys()) == [SOURCE_KEY]
    catalog.db.close()


async def test_a_broker_without_ids_keeps_the_recorded_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = users_catalog(tmp_path)
    ids_answer(monkeypatch, OLD_ID)
    await catalog.check_source(2, {0: 0, 1: 0})
    load(catalog, ("123", ["books"]))
    ids_answer(monkeypatch, None)
    assert await catalog.check_source(2, {0: 1, 1: 0}) is None
    assert catalog.built_from() == SourceTopic(OLD_ID, 2)
    assert await catalog.check_source(2, {0: 0, 1: 0}) == (
        "partition 0 ends at offset 0, the catalog had read to 1"
    )
    assert catalog.get("123") is None
    # The old id is known not to be this topic's; its own is unknown.
    assert catalog.built_from() == SourceTopic(None, 2)
    assert catalog.db is not None
    catalog.db.close()


async def test_a_serving_process_stops_serving_dropped_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drop is a write to the worker's database: a secondary catching up sees it, and
    the categories it had decoded are forgotten."""
    catalog = users_catalog(tmp_path)
    ids_answer(monkeypatch, OLD_ID)
    await catalog.check_source(2, {0: 0, 1: 0})
    load(catalog, ("123", ["books"]))
    settings = load_settings({"STREAMAPP_DATA_DIR": str(tmp_path / "data")})
    reader = CatalogReader(profile_catalogs(settings)[0], tmp_path / "scratch")
    reader.follow(str(catalog.path))
    reader.catch_up()
    assert reader.categories("123") == frozenset({"books"})

    ids_answer(monkeypatch, NEW_ID)
    await catalog.check_source(2, {0: 3, 1: 0})
    reader.catch_up()
    assert reader.categories("123") == frozenset()
    assert reader.catalog.get("123") is None
    reader.close()
    assert catalog.db is not None
    catalog.db.close()


# -- the topic-id request on the wire ------------------------------------------------------
def test_the_topic_id_request_and_response_bytes() -> None:
    request = TopicIdsRequest(["users"])
    v12 = request.build(MetadataRequest_v12)
    # topics: 1 (+1, compact), a zero id, "users" (5 + 1), no tags; no auto-creation,
    # no authorized operations, no tags.
    assert v12.encode() == b"\x02" + bytes(16) + b"\x06users" + b"\x00" + b"\x00\x00\x00"
    assert v12.build_request_header(7, "c").encode()[-1:] == b"\x00"  # flexible header
    v10 = request.build(MetadataRequest_v10)
    assert v10.encode() == b"\x02" + bytes(16) + b"\x06users" + b"\x00" + b"\x00\x00\x00\x00"

    topic_id = uuid.UUID(OLD_ID)
    partition = (0, 0, 1, 0, [1], [1], [], {})
    topics = [
        (0, "users", topic_id, False, [partition], -2147483648, {}),
        (3, "gone", uuid.UUID(int=0), False, [], -2147483648, {}),
        (0, "old-broker", uuid.UUID(int=0), False, [partition], -2147483648, {}),
    ]
    brokers = [(1, "127.0.0.1", 9092, None, {})]
    for response_type, extra in ((MetadataResponse_v12, ()), (MetadataResponse_v10, (0,))):
        raw = response_type(0, brokers, "cluster", 1, topics, *extra, {}).encode()
        decoded = response_type.decode(BytesIO(raw))
        assert ids_of(decoded) == {"users": OLD_ID, "gone": None, "old-broker": None}
