"""The commit correction: a committed offset never passes a record not yet processed."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree

from streamapp import faust_fixes

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
