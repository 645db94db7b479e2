"""The faust wiring's own small pieces, without a broker."""

from aiokafka.partitioner import DefaultPartitioner

import streamapp.app  # noqa: F401 - the app with its agents, as the worker loads it
from streamapp.worker.app import settings
from streamapp.worker.tables import home_partition


def test_home_partition_is_the_producers_choice() -> None:
    """A record keyed by user id lands where re-keying would send it (murmur2, like Java)."""
    partitions = list(range(settings.partitions))
    for user_id in ["123", "user-1", "ü-ñ", "x" * 200, *(f"u{i}" for i in range(500))]:
        want = DefaultPartitioner()(user_id.encode(), partitions, partitions)
        assert home_partition(user_id) == want


def test_the_workers_conductor_hands_source_records_to_their_checkpoints() -> None:
    """faust_fixes 16. is installed before the app's conductor compiled its callback: the
    callback faust's fetch loop calls is the one that knows batch readers."""
    from streamapp.worker.app import app

    assert app.topics.on_message.__qualname__ == "_compile_message_handler.<locals>.on_message"
    assert app.topics.on_message.__module__ == "streamapp.worker.faust_fixes"
