"""The faust wiring's own small pieces, without a broker."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
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


def test_the_table_manager_starts_the_tables_without_a_fixed_second() -> None:
    """faust_fixes 17.: the worker's table manager registers the changelogs and starts
    recovery at once (faust's own on_start sleeps a second first), and only while running."""
    from faust.tables.manager import TableManager

    from streamapp.worker import faust_fixes

    assert TableManager.on_start is faust_fixes._table_manager_on_start
    done: list[str] = []

    async def step(name: str) -> None:
        done.append(name)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    manager = SimpleNamespace(
        should_stop=False,
        sleep=no_sleep,
        _update_channels=lambda: step("channels"),
        recovery=SimpleNamespace(start=lambda: step("recovery")),
    )
    asyncio.run(faust_fixes._table_manager_on_start(manager))
    assert done == ["channels", "recovery"]
    manager.should_stop, done[:] = True, []
    asyncio.run(faust_fixes._table_manager_on_start(manager))
    assert done == []


def test_a_source_agent_makes_its_checkpoint_the_topics_reader_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the registration, records would take faust's stream (and its cost) again."""
    from streamapp.worker import agents, faust_fixes

    seen: dict[str, Any] = {}

    class Checkpoint:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.closed = False

        async def run(self) -> None:
            seen["reader"] = faust_fixes._readers.get("t-agents")

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(agents, "Checkpoint", Checkpoint)
    stream = SimpleNamespace(channel=SimpleNamespace(get_topic_name=lambda: "t-agents"))
    # asyncio.run, not an async test: this module's tests run before the session's loop
    # exists, and the sync tests of test_fetch_path.py need the loop that one sets.
    asyncio.run(agents.through_checkpoint(stream, None, "t-agents-source"))  # type: ignore[arg-type]
    assert isinstance(seen["reader"], Checkpoint) and seen["reader"].closed
    assert "t-agents" not in faust_fixes._readers and "t-agents-source" not in agents.checkpoints


def test_kept_sealed_ids_are_forgotten_on_every_revocation_and_assignment() -> None:
    """pair_state.SealedIds is valid only while this worker's own counting writes its
    partitions: faust's rebalance signals clear it, so a batch that began before cannot keep
    what it read either."""
    from array import array

    from streamapp.core.pair_state import PairState
    from streamapp.worker import ingest
    from streamapp.worker.app import app

    sealed = ingest.sealed_ids

    def keep_one() -> None:
        state = PairState(schunks=[[1, 5, 2]])
        state.sealed_read.append((1, 5, 2, array("Q", [3, 4])))
        sealed.keep(b"p", state, sealed.generation)
        assert len(sealed) == 1

    async def rebalance() -> None:
        keep_one()
        await app.on_partitions_revoked.send(set())
        assert len(sealed) == 0
        keep_one()
        began = sealed.generation
        await app.on_partitions_assigned.send(set())
        assert len(sealed) == 0 and sealed.generation > began

    asyncio.run(rebalance())
