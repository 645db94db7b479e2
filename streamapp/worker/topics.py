"""Every topic the app reads or writes. Values are raw bytes: parsing is ours (parsing.py)."""

from __future__ import annotations

from streamapp.worker.app import app, settings

_partitions = settings.partitions


def _topic(name: str, *, compacting: bool = False):
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=_partitions,
        compacting=compacting,
        internal=True,  # faust creates it with STREAMAPP_PARTITIONS when missing
    )


interactions = _topic(settings.topic("interactions"))
users = _topic(settings.topic("users"), compacting=True)
sellers = _topic(settings.topic("sellers"), compacting=True)
# Accepted interactions re-keyed by user id, so a user's pairs and profile share a partition
# whatever key the producers used.
interactions_by_user = _topic(settings.internal_topic("interactions-by-user"))
affinity_updates = _topic(settings.topic("affinity-updates"))

dead_letters = {
    source: _topic(settings.topic(f"{source}-dlq"))
    for source in ("interactions", "users", "sellers")
}

affinity_updates_name = settings.topic("affinity-updates")
dead_letter_names = {source: topic.get_topic_name() for source, topic in dead_letters.items()}
