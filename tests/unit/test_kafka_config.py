"""One connection config and one topic catalog for every Kafka client of the app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamapp.core.config import ConfigError, load_settings
from streamapp.kafka.connection import client_options
from streamapp.kafka.topic_catalog import TopicCatalog, changelog_config
from streamapp.tools import demo, loader

SASL = {
    "KAFKA_BROKER": "kafka://h1:9093;h2",
    "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "u",
    "KAFKA_SASL_PASSWORD": "p",
}


def test_client_options_carry_bootstrap_and_security() -> None:
    assert client_options(load_settings({})) == {"bootstrap_servers": "127.0.0.1:9092"}
    assert client_options(load_settings(SASL)) == {
        "bootstrap_servers": "h1:9093,h2:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    ssl = client_options(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL"}))
    assert ssl["security_protocol"] == "SSL" and ssl["ssl_context"] is not None


def test_topic_catalog_names_every_topic() -> None:
    catalog = TopicCatalog.of(load_settings({"STREAMAPP_TOPIC_PREFIX": "t-", "STREAMAPP_ID": "a"}))
    assert catalog.configs() == {
        "t-interactions": {},
        "t-affinity-updates": {},
        "t-users": {"cleanup.policy": "compact"},
        "t-sellers": {"cleanup.policy": "compact"},
        "t-a-interactions-by-user": {},
        "t-interactions-dlq": {},
        "t-users-dlq": {},
        "t-sellers-dlq": {},
    }
    assert list(catalog.single_partition_configs()) == ["t-a-topics-epoch"]
    assert catalog.by_user_partition() == ["t-users", "t-a-interactions-by-user"]
    assert catalog.profile_topic("sellers") == "t-sellers"


def test_a_changelog_is_compacted_in_segments_that_close() -> None:
    """Kafka's default segment.ms (7 days) kept the cleaner away from a week of writes,
    which a rebuild then read one by one."""
    assert changelog_config(load_settings({})) == {
        "cleanup.policy": "compact",
        "segment.ms": "3600000",
    }
    short = load_settings({"STREAMAPP_CHANGELOG_SEGMENT_S": "60"})
    assert changelog_config(short)["segment.ms"] == "60000"
    with pytest.raises(ConfigError, match="STREAMAPP_CHANGELOG_SEGMENT_S"):
        load_settings({"STREAMAPP_CHANGELOG_SEGMENT_S": "0"})


class RecordingProducer:
    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.made.append(kwargs)

    async def start(self) -> None:
        raise OSError("not connecting in a unit test")

    async def stop(self) -> None:
        pass


@pytest.mark.parametrize("tool", [loader, demo])
def test_the_loader_and_the_demo_honour_the_security_settings(monkeypatch, tool) -> None:
    RecordingProducer.made = []
    monkeypatch.setattr(tool, "AIOKafkaProducer", RecordingProducer)
    settings = load_settings(SASL)
    with pytest.raises(OSError):
        if tool is loader:
            asyncio.run(loader.load(settings, {}, None, progress=False))
        else:
            catalogue = demo.Catalogue([], [])
            asyncio.run(demo.produce(settings, catalogue, 1.0, 0.0, 1))
    (kwargs,) = RecordingProducer.made
    assert kwargs["bootstrap_servers"] == "h1:9093,h2:9092"
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["sasl_plain_username"] == "u"
