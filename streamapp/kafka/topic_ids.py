"""Kafka's topic ids: the identity a topic keeps for its whole life and loses when it is
deleted, even if a topic of the same name is created right after.

A topic id is a UUID the broker assigns at creation (Kafka 2.8 and later). aiokafka 0.14
does not expose it: its metadata requests stop at version 5, and ids came with version 10.
So this module defines the metadata request and response of versions 10 to 12 with
aiokafka's own protocol types and sends it through a plain `AIOKafkaClient`, which picks
the highest version both sides speak. A broker that speaks none of them (older than 2.8)
has no topic ids: the answer is None, and callers fall back to weaker checks.
"""

from __future__ import annotations

import asyncio
import uuid
from io import BytesIO
from typing import Any, TypeAlias

from aiokafka import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, for_code
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from streamapp.core.config import Settings
from streamapp.kafka.connection import client_options

METADATA = 3  # the Metadata API key
WAIT_S = 20.0
NO_ID = uuid.UUID(int=0)  # what the broker sends for "no id" (and what a request by name sends)
UNKNOWN_TOPIC = 3  # UNKNOWN_TOPIC_OR_PARTITION: the topic does not exist (an id of None)


class Uuid(AbstractType[uuid.UUID]):
    """Kafka's UUID type: 16 bytes, most significant first."""

    @classmethod
    def encode(cls, value: uuid.UUID) -> bytes:
        return value.bytes

    @classmethod
    def decode(cls, data: BytesIO) -> uuid.UUID:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding UUID")
        return uuid.UUID(bytes=raw)


_TEXT = CompactString("utf-8")
_BROKERS = CompactArray(
    ("node_id", Int32),
    ("host", _TEXT),
    ("port", Int32),
    ("rack", _TEXT),
    ("tags", TaggedFields),
)
_PARTITIONS = CompactArray(
    ("error_code", Int16),
    ("partition_index", Int32),
    ("leader_id", Int32),
    ("leader_epoch", Int32),
    ("replica_nodes", CompactArray(Int32)),
    ("isr_nodes", CompactArray(Int32)),
    ("offline_replicas", CompactArray(Int32)),
    ("tags", TaggedFields),
)
_TOPICS = CompactArray(
    ("error_code", Int16),
    ("name", _TEXT),
    ("topic_id", Uuid),
    ("is_internal", Boolean),
    ("partitions", _PARTITIONS),
    ("topic_authorized_operations", Int32),
    ("tags", TaggedFields),
)
_REQUESTED = CompactArray(("topic_id", Uuid), ("name", _TEXT), ("tags", TaggedFields))


class MetadataResponse_v10(Response):
    API_KEY = METADATA
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", _BROKERS),
        ("cluster_id", _TEXT),
        ("controller_id", Int32),
        ("topics", _TOPICS),
        ("cluster_authorized_operations", Int32),  # versions 8 to 10 only
        ("tags", TaggedFields),
    )


class MetadataResponse_v11(Response):
    API_KEY = METADATA
    API_VERSION = 11
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", _BROKERS),
        ("cluster_id", _TEXT),
        ("controller_id", Int32),
        ("topics", _TOPICS),
        ("tags", TaggedFields),
    )


class MetadataResponse_v12(Response):
    API_KEY = METADATA
    API_VERSION = 12
    SCHEMA = MetadataResponse_v11.SCHEMA  # only the request's topic name became nullable


class MetadataRequest_v10(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = METADATA
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", _REQUESTED),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class MetadataRequest_v11(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = METADATA
    API_VERSION = 11
    RESPONSE_TYPE = MetadataResponse_v11
    SCHEMA = Schema(
        ("topics", _REQUESTED),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = METADATA
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = MetadataRequest_v11.SCHEMA


TopicIdsStruct: TypeAlias = MetadataRequest_v10 | MetadataRequest_v11 | MetadataRequest_v12


class TopicIdsRequest(Request[TopicIdsStruct]):
    """Metadata of the named topics, in a version that carries their ids."""

    API_KEY = METADATA

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[TopicIdsStruct]) -> TopicIdsStruct:
        requested = [(NO_ID, name, {}) for name in self.topics]
        if request_struct_class.API_VERSION == 10:
            return request_struct_class(requested, False, False, False, {})
        return request_struct_class(requested, False, False, {})


def ids_of(response: Any) -> dict[str, str | None]:
    """topic name -> its id (hex), None for a topic that does not exist or has no id.
    Any other error of a topic is raised."""
    found: dict[str, str | None] = {}
    for error_code, name, topic_id, *_ in response.topics:
        if error_code == UNKNOWN_TOPIC:
            found[name] = None
        elif error_code:
            raise for_code(error_code)(f"metadata of {name}")
        else:
            found[name] = None if topic_id == NO_ID else topic_id.hex
    return found


async def topic_ids(settings: Settings, topics: list[str]) -> dict[str, str | None] | None:
    """The ids of `topics` (None for one that does not exist), or None when the broker
    has no topic ids (older than Kafka 2.8)."""
    client = AIOKafkaClient(**client_options(settings))
    try:
        await asyncio.wait_for(client.bootstrap(), WAIT_S)
        request = TopicIdsRequest(topics)
        try:
            response = await asyncio.wait_for(
                client.send(client.get_random_node(), request), WAIT_S
            )
        except (NotImplementedError, IncompatibleBrokerVersion):
            return None  # the broker speaks no metadata version with ids
        ids = ids_of(response)
        return {name: ids.get(name) for name in topics}
    finally:
        await client.close()


async def topic_id(settings: Settings, topic: str, wait_s: float) -> str | None:
    """The id of `topic`, which exists: asked again for up to `wait_s` while the broker
    asked does not show it yet (a topic just created, a broker that has not seen it) or
    fails; None when the broker has no topic ids. Raises the last error after `wait_s`."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            ids = await topic_ids(settings, [topic])
            if ids is None or ids.get(topic) is not None:
                return None if ids is None else ids[topic]
            error: Exception = LookupError(f"{topic} has no id yet")
        except Exception as exc:  # a topic-level error, or the broker away a moment
            error = exc
        if asyncio.get_running_loop().time() >= deadline:
            raise error
        await asyncio.sleep(0.5)
