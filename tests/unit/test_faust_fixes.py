"""The commit correction: a committed offset never passes a record not yet processed."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree

from streamapp.worker import faust_fixes

faust_fixes.apply()
from faust.transport.consumer import Consumer  # noqa: E402


def consumer(committed: int | None, acked: list[int], gaps: list[tuple[int, int]] = ()):
    tree = IntervalTree()
    for begin, end in gaps:
        tree.addi(begin, end)
    return SimpleNamespace(
        _acked=defaultdict(list, {"tp": list(acked)}),
        _acked_index=defaultdict(set, {"tp": set(acked)}),
        _committed_offset=defaultdict(lambda: None, {"tp": committed}),
        _gap=defaultdict(IntervalTree, {"tp": tree}),
    )


def new_offset(c) -> int | None:
    return Consumer._new_offset(c, "tp")


def test_one_missing_record_at_the_head_blocks_the_commit() -> None:
    assert new_offset(consumer(57, [58, 59, 60])) is None  # faust itself returned 61
    assert new_offset(consumer(0, [1, 2])) is None  # committed 0 was not checked at all


def test_contiguous_runs_and_recorded_gaps_still_commit() -> None:
    assert new_offset(consumer(57, [57, 58, 59])) == 60
    assert new_offset(consumer(0, [0, 1, 2, 5])) == 3
    assert new_offset(consumer(57, [59, 60], gaps=[(57, 59)])) == 61  # compacted away
    assert new_offset(consumer(None, [3, 4])) == 5  # never committed: faust's own rule


def acking_consumer(committed: int | None):
    c = consumer(committed, [])
    c._unacked_messages = set()
    c._n_acked = 0
    c._waiting_for_ack = None
    c.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    return c


class Message(SimpleNamespace):
    __hash__ = object.__hash__  # faust keeps messages in a set


def message(offset: int, tracked: bool) -> Message:
    return Message(tp="tp", topic="t", partition=0, offset=offset, acked=False, tracked=tracked)


def test_an_event_the_stream_skipped_is_not_committable() -> None:
    """faust acks an event it skips after a rebalance (old generation, stopped flow) without
    processing it; its copy read again after the seek must be the one that counts."""
    c = acking_consumer(57)
    assert Consumer.ack(c, message(57, tracked=False)) is False
    assert c._acked["tp"] == [] and new_offset(c) is None
    assert Consumer.ack(c, message(57, tracked=True)) is True  # the copy, processed
    assert new_offset(c) == 58


def test_a_partition_stuck_behind_a_record_never_processed_is_found() -> None:
    c = consumer(57, [58, 59])  # 57 was read by faust but never reached the stream
    assert faust_fixes.stuck(c) == {"tp": 57}
    assert faust_fixes.stuck(consumer(57, [57, 58])) == {}  # moving: nothing to do
    assert faust_fixes.stuck(consumer(57, [])) == {}
    assert faust_fixes.stuck(consumer(None, [3])) == {}  # never committed: no reference
    assert faust_fixes.stuck(consumer(57, [59], gaps=[(57, 59)])) == {}  # compacted away
