"""Every topic the app uses, named once from the settings.

The worker's faust topics (streamapp/worker/topics.py), its outputs (ingest.py), the
start-up check that creates what is missing (startup.ensure_topics) and the local-state
epoch (local_state.py) all take their names from here. faust's table changelogs are the
only topics not listed: faust names them after the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamapp.core.config import Settings

DEAD_LETTER_SOURCES = ("interactions", "users", "sellers")  # each has a <source>-dlq
FORMAT_HEADER = "streamapp-format"  # on every record of affinity-updates and the DLQs
COMPACT = {"cleanup.policy": "compact"}
# The epoch topic is never compacted or expired: its first record is the topics' epoch for
# their whole life (local_state.py), its first record of each key a setting the state is
# built under (baked_settings.py).
EPOCH_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


def changelog_config(settings: Settings) -> dict[str, str]:
    """A table changelog's topic configuration: compacted, in segments that close after
    STREAMAPP_CHANGELOG_SEGMENT_S (the cleaner never touches the open one), so a rebuild
    reads about one record per live key instead of every write since the last week."""
    return {**COMPACT, "segment.ms": str(settings.changelog_segment_s * 1000)}


@dataclass(frozen=True)
class TopicCatalog:
    interactions: str
    users: str
    sellers: str
    affinity_updates: str
    # Accepted interactions re-keyed by user id (app-private, named after the app id).
    interactions_by_user: str
    # One partition: the epoch of the app's topics, then the settings baked into the state
    # (app-private).
    epoch: str
    dead_letters: Mapping[str, str]  # source -> its dead-letter topic

    @classmethod
    def of(cls, settings: Settings) -> TopicCatalog:
        return cls(
            interactions=settings.topic("interactions"),
            users=settings.topic("users"),
            sellers=settings.topic("sellers"),
            affinity_updates=settings.topic("affinity-updates"),
            interactions_by_user=settings.internal_topic("interactions-by-user"),
            epoch=settings.internal_topic("topics-epoch"),
            dead_letters={s: settings.topic(f"{s}-dlq") for s in DEAD_LETTER_SOURCES},
        )

    def message_formats(self) -> dict[str, list[tuple[str, bytes]]]:
        """The record headers that name the format of what the app publishes for others:
        the model (schemas/) and its version, raised on any change a reader must know of."""
        out = {self.affinity_updates: [(FORMAT_HEADER, b"AffinityUpdate/1")]}
        for topic in self.dead_letters.values():
            out[topic] = [(FORMAT_HEADER, b"DeadLetter/1")]
        return out

    def configs(self) -> dict[str, dict[str, str]]:
        """The topics created with STREAMAPP_PARTITIONS partitions, with their configs (the
        profile topics compacted)."""
        names: dict[str, dict[str, str]] = {self.interactions: {}, self.affinity_updates: {}}
        names.update({self.users: dict(COMPACT), self.sellers: dict(COMPACT)})
        names[self.interactions_by_user] = {}
        names.update({topic: {} for topic in self.dead_letters.values()})
        return names

    def single_partition_configs(self) -> dict[str, dict[str, str]]:
        """The topics created with one partition, with their configs."""
        return {self.epoch: dict(EPOCH_CONFIG)}

    def profile_topic(self, source: str) -> str:
        """The topic of the "users" or the "sellers" profiles."""
        return {"users": self.users, "sellers": self.sellers}[source]

    def by_user_partition(self) -> list[str]:
        """The topics that start-up (with the table changelogs, which faust names) requires to
        have exactly STREAMAPP_PARTITIONS partitions when they exist: the re-keying topic,
        whose partition numbers are the tables' partitions, and `users`. (Nothing reads
        `users` by partition number any more: the profile catalogs read all of its
        partitions, whatever their count. The check is kept as it was.)"""
        return [self.users, self.interactions_by_user]
