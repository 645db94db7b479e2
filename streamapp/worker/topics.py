"""The topics the agents read, as faust topics; the names of those the worker writes.
Every name comes from the topic catalog (streamapp/kafka/topic_catalog.py). Values are raw
bytes: parsing is ours (parsing.py)."""

from __future__ import annotations

from streamapp.worker.app import app, catalog, settings


def _topic(name: str, *, compacting: bool = False):
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        compacting=compacting,
        internal=True,  # faust creates it with STREAMAPP_PARTITIONS when missing
    )


interactions = _topic(catalog.interactions)
users = _topic(catalog.users, compacting=True)
sellers = _topic(catalog.sellers, compacting=True)
# Accepted interactions re-keyed by user id, so a user's pairs share a partition whatever
# key the producers used.
interactions_by_user = _topic(catalog.interactions_by_user)

# The topics agents read, whose offsets the checkpoints commit.
sources = (interactions, interactions_by_user, users, sellers)

# Written by ingest's own producer (outbox.py), not through faust: names only.
affinity_updates_name = catalog.affinity_updates
dead_letter_names = dict(catalog.dead_letters)  # source -> its dead-letter topic
