"""faust's own fetch loop (`Consumer._drain_messages` and `getmany`, faust 0.15.3) over a
scripted broker: what a re-read does while an earlier fetch is still being handed out, and
where gaps come from. Issue 16's loss ("committed past records never counted") and stall
("the re-read is a no-op") are both this race; docs/exactness.md tells the evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.conductor import Conductor
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent

from streamapp.worker import faust_fixes

faust_fixes.apply()
TP = faust.types.TP("interactions", 0)


class Record(SimpleNamespace):
    pass


class ScriptedConsumer:
    """Just enough of faust's Consumer to run its real fetch loop. The 'broker' holds the
    offsets in `offsets` (a missing offset is a transaction marker or compacted away); a
    fetch returns up to `fetch_size` records from the position, as aiokafka does."""

    # faust's real code (with faust_fixes applied), run against this object:
    _drain_messages = Consumer._drain_messages
    getmany = Consumer.getmany
    _wait_next_records = Consumer._wait_next_records
    seek = Consumer.seek
    perform_seek = Consumer.perform_seek
    seek_to_committed = ThreadDelegateConsumer.seek_to_committed
    _new_offset = Consumer._new_offset
    _add_gap = Consumer._add_gap
    wait_first = Consumer.wait_first  # faust_fixes 12., and mode's own when a delivery waits

    def __init__(self, offsets: list[int], fetch_size: int = 5, committed: int = 0) -> None:
        self.offsets = offsets
        self.fetch_size = fetch_size
        self.fetch_position = committed
        self.delivered: list[int] = []
        self.on_deliver: Any = None
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._read_offset[TP] = committed or None
        self._gap: dict[Any, IntervalTree] = defaultdict(IntervalTree)
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._committed_offset[TP] = committed
        self._acked: dict[Any, list[int]] = defaultdict(list)
        self._acked_index: dict[Any, set[int]] = defaultdict(set)
        self._buffered_partitions: set[Any] = set()
        self._commit_every = None
        self._n_acked = 0
        self.flow_active = True
        self.should_stop = False
        self.not_waiting_next_records = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self._stopped = asyncio.Event()
        self._crashed = asyncio.Event()
        self.loop = asyncio.get_event_loop()
        self.consumer_stopped_errors = ()
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self.log = SimpleNamespace(dev=lambda *a, **k: None, exception=print, info=print)
        self.scheduler = SimpleNamespace(
            iterate=lambda records: ((tp, r) for tp, rs in records.items() for r in rs)
        )
        self.app = SimpleNamespace(
            consumer_generation_id=1,
            client_only=False,
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, hw: None),
            should_stop=False,
            # No standby partitions: faust_fixes 11. leaves every fetch as it is.
            tables=SimpleNamespace(
                recovery=SimpleNamespace(standby_tps=set(), active_tps=set(), standby_offsets={})
            ),
        )
        self.transport = SimpleNamespace(app=self.app)
        faust_fixes.ledger(self).next_offset[TP] = committed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def position(self, tp: Any) -> int:
        return self.fetch_position

    def restarted(self, committed: int | None, log_start: int = 0) -> None:
        """A new incarnation: the broker holds `committed` (None: no commit yet, so the
        reset policy starts at the log's start); faust's fetch state is empty."""
        self.fetch_position = log_start if committed is None else committed
        self._committed_offset.clear()
        self._read_offset.clear()

        async def seek_to_committed() -> dict[Any, int | None]:
            return {TP: committed}

        self._thread = SimpleNamespace(seek_to_committed=seek_to_committed)

    def _get_active_partitions(self) -> set[Any]:
        return {TP}

    def assignment(self) -> set[Any]:
        return {TP}

    def highwater(self, tp: Any) -> int:
        return max(self.offsets) + 1

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[Any, list[Any]]:
        batch = [o for o in self.offsets if o >= self.fetch_position][: self.fetch_size]
        if not batch:
            self._stopped.set()  # the end of the script: the loop stops
            return {}
        self.fetch_position = batch[-1] + 1
        await asyncio.sleep(0.02)  # the consumer thread's round trip: a seek may land meanwhile
        return {TP: [Record(offset=o) for o in batch]}

    async def _seek(self, tp: Any, offset: int) -> None:
        self.fetch_position = offset

    def _to_message(self, tp: Any, record: Any) -> Any:
        return SimpleNamespace(topic=tp.topic, tp=tp, offset=record.offset, key=None, value=None)

    async def callback(self, message: Any) -> None:
        self.delivered.append(message.offset)
        if self.on_deliver is not None:
            await self.on_deliver(message.offset)


async def drain(consumer: ScriptedConsumer) -> None:
    await asyncio.wait_for(consumer._drain_messages(SimpleNamespace(_stopped=asyncio.Event())), 5)


def prefetched_past(consumer: ScriptedConsumer, read_offset: int) -> None:
    """faust's read offset was moved past records it never handed out (a record prefetched
    before the start-up seek): those records are dropped as already read."""
    consumer._read_offset[TP] = read_offset


async def test_plain_faust_seek_during_a_fetch_loses_the_reread() -> None:
    """What the agents did before (an immediate `consumer.seek` on noticing the jump): the
    rest of the fetch being handed out moves faust's read offset past the seek, so the
    re-read records are dropped again, and faust's gap inference turns the jump into a
    false gap that lets the commit pass records never counted."""
    consumer = ScriptedConsumer(list(range(20)), committed=2)
    consumer._add_gap = types.MethodType(faust_fixes._original_add_gap, consumer)
    prefetched_past(consumer, 12)

    tasks: list[asyncio.Future[None]] = []

    async def seek_from_the_stream() -> None:
        await asyncio.sleep(0.01)  # the stream, another task, sees 12 a little later
        await consumer.seek(TP, 2)

    async def on_deliver(offset: int) -> None:
        if offset == 12 and not consumer.delivered[:-1]:  # 12 came first: 2-11 skipped
            tasks.append(asyncio.ensure_future(seek_from_the_stream()))

    consumer.on_deliver = on_deliver
    await drain(consumer)
    assert [o for o in consumer.delivered if o < 12] == []  # the re-read never arrived
    assert consumer._gap[TP].overlaps(5)  # and faust believes offsets 3-16 do not exist
    consumer._acked[TP] = [2, *range(12, 20)]  # if 2 is ever processed ...
    consumer._new_offset = types.MethodType(faust_fixes._original_new_offset, consumer)
    assert consumer._new_offset(TP) > 11  # ... faust commits past 3-11: lost for good


async def test_a_rewind_reads_every_record_again_and_makes_no_false_gap() -> None:
    consumer = ScriptedConsumer(list(range(20)), committed=2)
    prefetched_past(consumer, 12)

    tasks: list[asyncio.Future[None]] = []

    async def rewind_from_the_stream() -> None:
        await asyncio.sleep(0.01)
        faust_fixes.rewind(consumer, TP, 2)  # applied at the next fetch boundary

    async def on_deliver(offset: int) -> None:
        if offset == 12 and not consumer.delivered[:-1]:
            tasks.append(asyncio.ensure_future(rewind_from_the_stream()))

    consumer.on_deliver = on_deliver
    await drain(consumer)
    assert sorted(set(consumer.delivered)) == list(range(2, 20))
    assert not consumer._gap[TP]
    assert faust_fixes.ledger(consumer).rewinds_applied == 1


async def test_offsets_the_broker_never_returns_are_gaps_and_commit() -> None:
    """Transaction markers and compaction: offsets 3 and 7-8 hold no record. Each is a gap
    (faust's inference missed any jump after read offset 0), so the commit reaches the end
    instead of stalling at the first marker."""
    consumer = ScriptedConsumer([0, 1, 2, 4, 5, 6, 9, 10], fetch_size=3)
    await drain(consumer)
    assert consumer.delivered == [0, 1, 2, 4, 5, 6, 9, 10]
    gaps = consumer._gap[TP]
    assert [o for o in range(11) if gaps.overlaps(o)] == [3, 7, 8]
    consumer._acked[TP] = list(consumer.delivered)
    assert consumer._new_offset(TP) == 11


async def test_a_marker_at_the_committed_offset_after_a_restart_is_a_gap() -> None:
    """After a restart the fetch starts at the committed offset; a transaction's commit
    marker there (offset 1) is never delivered. faust's read offset, set to 1 by the seek,
    made the jump to 2 look like no gap at all, and the commit stayed at 1 for good."""
    consumer = ScriptedConsumer([2, 3], committed=1)
    await drain(consumer)
    assert consumer.delivered == [2, 3]
    consumer._acked[TP] = [2, 3]
    assert consumer._new_offset(TP) == 4


async def test_a_fetch_that_overlapped_a_seek_records_no_gap() -> None:
    consumer = ScriptedConsumer([0, 1, 2])
    book = faust_fixes.ledger(consumer)
    book.next_offset[TP] = 0
    faust_fixes._note_fetched(consumer, book, {TP: [Record(offset=50)]}, stale=True)
    assert not consumer._gap[TP] and book.next_offset[TP] is None


async def test_a_fetch_that_overlapped_a_seek_leaves_the_next_offset_unknown() -> None:
    """Seen in the SIGKILL soak: the end-of-recovery seek overlapped a fetch whose records
    faust still handed out; keeping the seek's offset as "next" made the next fetch look
    like a jump over them, a false gap over records that were processed."""
    consumer = ScriptedConsumer([0, 1, 2])
    book = faust_fixes.ledger(consumer)
    book.next_offset[TP] = 100
    faust_fixes._note_fetched(consumer, book, {TP: [Record(offset=100), Record(offset=101)]}, True)
    assert book.next_offset[TP] is None
    faust_fixes._note_fetched(consumer, book, {TP: [Record(offset=102)]}, False)
    assert not consumer._gap[TP] and book.next_offset[TP] == 103


def test_an_acked_offset_inside_a_gap_does_not_slow_the_commit() -> None:
    """faust adds every gap offset to the acked ones without looking: a duplicate ends its
    consecutive run, and the commit crawled one offset per interval."""
    consumer = ScriptedConsumer([0])
    consumer._committed_offset[TP] = 10
    consumer._gap[TP].addi(10, 20)
    consumer._acked[TP] = list(range(10, 30))
    assert consumer._new_offset(TP) == 30


def test_an_undecodable_batch_names_its_partition_and_offset() -> None:
    from aiokafka.consumer.fetcher import FetchResult
    from aiokafka.errors import UnsupportedCodecError

    class Records:
        next_fetch_offset = 41

        def __iter__(self) -> Any:
            raise UnsupportedCodecError("Libraries for snappy compression codec not found")

    state = SimpleNamespace(paused=False, position=41)
    assignment = SimpleNamespace(active=True, state_value=lambda tp: state)
    result = FetchResult(TP, assignment=assignment, partition_records=Records(), backoff=0)
    with pytest.raises(faust_fixes.UndecodableBatch, match="snappy") as raised:
        result.getall()
    assert (raised.value.tp, raised.value.offset) == (TP, 41)


async def test_an_undecodable_batch_sets_its_partition_aside_and_the_worker_goes_on() -> None:
    """It crashed faust's fetcher (and the worker, again after each restart)."""
    consumer = ScriptedConsumer([0, 1, 2])
    paused: list[Any] = []
    consumer.pause_partitions = paused.extend
    cause = faust_fixes.UndecodableBatch(TP, 7, ValueError("corrupt"))

    async def failing(active_partitions: Any, timeout: float) -> Any:
        raise cause

    consumer._getmany = failing
    assert await consumer._wait_next_records(1.0) == ({}, None)
    assert paused == [TP]
    assert faust_fixes.ledger(consumer).undecodable == {TP: 7}
    assert faust_fixes._fetching(consumer, TP).startswith("no: an undecodable record batch")


async def _skipped_before_the_first_record(committed: int | None) -> ScriptedConsumer:
    """A fetch from before the start-up seek reached the stream after it (offset 12): faust
    set its read offset there and dropped the records from the commit up to it as read."""
    consumer = ScriptedConsumer(list(range(20)))
    consumer.restarted(committed)
    await consumer.perform_seek()
    prefetched_past(consumer, 12)
    await drain(consumer)
    assert consumer.delivered == list(range(12, 20))  # 0-11 (2-11) never reached the stream
    consumer._acked[TP] = list(consumer.delivered)
    return consumer


async def test_plain_faust_commits_past_records_skipped_before_a_first_commit() -> None:
    """Issue 16: with no commit yet (and with a commit at offset 0, which faust records as
    none), faust's commit rule starts at the lowest acked offset: 0-11 were committed past
    and never counted."""
    for committed in (None, 0):
        consumer = ScriptedConsumer(list(range(20)))
        consumer.restarted(committed)
        await faust_fixes._original_perform_seek(consumer)
        assert consumer._committed_offset[TP] is None
        consumer._acked[TP] = list(range(12, 20))
        assert faust_fixes._original_new_offset(consumer, TP) == 20


async def test_a_partition_with_no_commit_yet_commits_from_where_reading_started() -> None:
    for committed in (None, 0, 2):
        consumer = await _skipped_before_the_first_record(committed)
        assert consumer._committed_offset[TP] == (committed or 0)
        assert consumer._new_offset(TP) is None  # held at the first record never counted
        consumer._acked[TP] = sorted({*consumer._acked[TP], *range(committed or 0, 12)})
        assert consumer._new_offset(TP) == 20


async def test_a_hold_on_an_offset_the_reread_shows_is_a_marker_is_released() -> None:
    """A skip found from a fetch that overlapped a seek, where the offset is a transaction
    marker: the re-read shows it holds no record, and the hold at it must not keep the
    commit there for good. A gap known before the re-read does not release it."""
    consumer = ScriptedConsumer([0, 1, 3, 4], committed=2)
    consumer._gap[TP].addi(2, 3)  # believed before the re-read: not enough
    faust_fixes.rewind(consumer, TP, 2, hold=True)
    consumer._acked[TP] = [3, 4]
    assert consumer._new_offset(TP) is None  # held at 2
    consumer._gap[TP].clear()
    await drain(consumer)  # the re-read from 2: the broker returns 3 first
    assert consumer.delivered == [3, 4]
    assert faust_fixes.ledger(consumer).holds == {}
    consumer._acked[TP] = [3, 4]
    assert consumer._new_offset(TP) == 5


def test_a_hole_is_no_gap_unless_every_offset_of_it_is_one() -> None:
    consumer = ScriptedConsumer([0])
    consumer._gap[TP].addi(3, 5)
    consumer._gap[TP].addi(5, 7)
    assert faust_fixes.gap_covers(consumer, TP, 3, 7)
    assert faust_fixes.gap_covers(consumer, TP, 4, 6)
    assert not faust_fixes.gap_covers(consumer, TP, 3, 8)  # 7 may be a record faust skipped
    assert not faust_fixes.gap_covers(consumer, TP, 2, 4)
    assert faust_fixes.gap_covers(consumer, TP, 9, 9)  # nothing between
    assert not faust_fixes.gap_covers(ScriptedConsumer([0]), TP, 1, 2)


def test_offsets_below_the_commit_are_settled() -> None:
    """A marker right after a record, fetched with it, is a gap at once; the next commit
    passes it and forgets the gap (6.). The next record (seconds later) then comes after
    an offset the commit settled, not one faust skipped (test_producers.py's marker test
    failed once on that: a re-read of the marker, and the record waited for the stall
    watch)."""
    consumer = ScriptedConsumer([0], committed=2)
    assert faust_fixes.gap_covers(consumer, TP, 1, 2)
    assert not faust_fixes.gap_covers(consumer, TP, 1, 3)
    consumer._gap[TP].addi(2, 4)
    assert faust_fixes.gap_covers(consumer, TP, 1, 4)


class PartitionRecords:
    """aiokafka's PartitionRecords as getall sees it: the records of one fetch position,
    and the position after them (past a marker or aborted records at the end)."""

    def __init__(self, start: int, offsets: list[int], end: int) -> None:
        self.next_fetch_offset, self.offsets, self.end = start, offsets, end

    def __iter__(self) -> Any:
        for offset in self.offsets:
            self.next_fetch_offset = offset + 1
            yield Record(offset=offset)
        self.next_fetch_offset = self.end


def fetch_result(state: Any, start: int, offsets: list[int], end: int) -> Any:
    from aiokafka.consumer.fetcher import FetchResult

    assignment = SimpleNamespace(active=True, state_value=lambda tp: state)
    records = PartitionRecords(start, offsets, end)
    return FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)


class PartitionState(SimpleNamespace):
    """aiokafka's TopicPartitionState: the partition's position."""

    has_valid_position = True
    paused = False

    def consumed_to(self, offset: int) -> None:
        self.position = offset


def test_getall_says_which_position_its_records_were_read_from() -> None:
    state = PartitionState(position=581)
    run = fetch_result(state, 581, [583, 584], 585).getall()  # 581-582: aborted, and marker
    assert [r.offset for r in run] == [583, 584] and run.start == 581
    assert state.position == 585
    state.position = 0  # sought elsewhere meanwhile: aiokafka hands nothing out
    assert fetch_result(state, 585, [585], 586).getall() == []


def test_a_fetch_of_only_a_marker_is_remembered_for_the_next_records() -> None:
    """A transaction's commit marker fetched on its own (offset 1): aiokafka hands nothing
    out and moves the position to 2, so no fetch path sees it. The next records (from 2,
    seconds later) must still say that nothing lies between 1 and them, or the marker looks
    like a record faust skipped and is read again (test_producers.py found that)."""
    state = PartitionState(position=0)
    run = fetch_result(state, 0, [0], 1).getall()
    assert (run.start, run.end) == (0, 1)
    assert fetch_result(state, 1, [], 2).getall() == [] and state.position == 2
    assert fetch_result(state, 2, [], 3).getall() == []  # another one
    assert fetch_result(state, 3, [3], 4).getall().start == 1
    assert fetch_result(state, 4, [5], 6).getall().start == 4  # used once
    state.position = 20  # sought past a fetch not read yet: aiokafka drops it unread
    assert fetch_result(state, 6, [], 8).getall() == []
    state.position = 20
    assert fetch_result(state, 20, [20], 21).getall().start == 20  # nothing taken for quiet


async def test_a_fetch_that_began_past_the_seek_makes_no_gap_over_what_it_skipped() -> None:
    """Seen with two workers after a SIGKILL (6 December): faust's seek to the committed
    offsets (312 here) seeks one partition at a time between broker round trips; records
    312-580 were handed out meanwhile (and then cleared from the stream's queue by faust's
    end of recovery), so the next fetch began at 581. Taken for a jump from 312, it made a
    gap over 312-580 and the commit passed records never counted. aiokafka says where it
    read from; only what lies between that and the first record is a gap."""
    consumer = ScriptedConsumer([0])
    book = faust_fixes.ledger(consumer)
    book.next_offset[TP] = 312  # what the seek left
    run = faust_fixes.FetchedRun([Record(offset=581), Record(offset=582)], start=581)
    faust_fixes._note_fetched(consumer, book, {TP: run}, stale=False)
    assert not consumer._gap[TP] and book.next_offset[TP] == 583
    # A marker where the fetch began is still a gap.
    run = faust_fixes.FetchedRun([Record(offset=585)], start=583)
    faust_fixes._note_fetched(consumer, book, {TP: run}, stale=False)
    assert [o for o in range(590) if consumer._gap[TP].overlaps(o)] == [583, 584]


async def test_records_handed_out_around_the_seek_are_read_again_from_the_commit() -> None:
    """After faust's seek to the committed offsets the next offset is the commit, unless a
    fetch of the partition was handed out around the seek (after the assignment paused it,
    faust makes it fetchable again just before the seek): then the position may be past
    the commit and faust clears what its stream had not taken yet when it resumes the flow.
    Unknown, so the watchdog's "markers at the end" rule cannot take the difference for
    offsets without records, and read again from the commit at the next fetch boundary (in
    the two-worker takeover runs such a partition otherwise waited 20 s for the stall
    watch, when nothing more came to show the hole)."""
    for when in (None, "before the seek", "during the seek"):
        consumer = await _seek_to_committed_at_2(handing_out=when)
        book = faust_fixes.ledger(consumer)
        assert book.seeked[TP] == 2
        assert book.next_offset[TP] == (2 if when is None else None)
        assert book.rewinds == ({} if when is None else {TP: 2})
        assert book.noted_at_assignment is None
    # The rewind is applied before the next fetch: everything from the commit again.
    consumer = await _seek_to_committed_at_2(handing_out="during the seek")
    consumer.fetch_position = 20
    consumer.offsets = list(range(30))
    await drain(consumer)
    assert consumer.delivered == list(range(2, 30))


async def _seek_to_committed_at_2(handing_out: str | None) -> ScriptedConsumer:
    consumer = ScriptedConsumer(list(range(20)))
    book = faust_fixes.ledger(consumer)

    def hand_out() -> None:  # a fetch of the partition reaches the fetch path
        faust_fixes._note_fetched(consumer, book, {TP: [Record(offset=2)]}, stale=True)

    async def seek_to_committed() -> dict[Any, int | None]:
        if handing_out == "during the seek":
            hand_out()
        return {TP: 2}

    consumer._thread = SimpleNamespace(seek_to_committed=seek_to_committed)
    await _assigned(consumer)
    if handing_out == "before the seek":
        hand_out()
    await consumer.seek_to_committed()
    return consumer


async def test_a_marker_read_with_the_record_before_it_is_a_gap_at_once() -> None:
    """The usual shape: a transaction's record (0) and its commit marker (1) in one fetch.
    aiokafka hands out 0 and stops at 2; the next record (2, seconds later) follows no
    unknown offset, and the marker is committable before it comes."""
    consumer = ScriptedConsumer([0])
    book = faust_fixes.ledger(consumer)
    state = PartitionState(position=0)
    run = fetch_result(state, 0, [0], 2).getall()
    assert (run.start, run.end) == (0, 2)
    faust_fixes._note_fetched(consumer, book, {TP: run}, stale=False)
    assert [o for o in range(5) if consumer._gap[TP].overlaps(o)] == [1]
    assert book.next_offset[TP] == 2
    run = fetch_result(state, 2, [2], 3).getall()
    faust_fixes._note_fetched(consumer, book, {TP: run}, stale=False)
    assert [o for o in range(5) if consumer._gap[TP].overlaps(o)] == [1]
    assert book.next_offset[TP] == 3


async def test_records_handed_out_before_a_first_commit_are_read_again_from_the_start() -> None:
    """No commit yet: aiokafka's seek to the committed offsets does not seek, and records
    handed out around it (dropped by faust while its flow is stopped) left the position at
    12. Pinning the start offset there (8.) would have committed past 0-11 unread; the
    reading began at 0, so that is the start, and it is read again from there."""
    consumer = ScriptedConsumer(list(range(20)))
    consumer.restarted(None)
    book = faust_fixes.ledger(consumer)
    await _assigned(consumer)
    run = faust_fixes.FetchedRun([Record(offset=o) for o in range(12)], start=0, end=12)
    faust_fixes._note_fetched(consumer, book, {TP: run}, stale=False)
    consumer.fetch_position = 12
    await consumer.perform_seek()
    assert book.rewinds == {TP: 0} and book.seeked[TP] == 0
    assert consumer._committed_offset[TP] == 0


async def _assigned(consumer: ScriptedConsumer) -> None:
    """faust_fixes' part of an assignment, without faust's."""

    async def faust_assigns(self: Any, assigned: Any, generation_id: int = 0) -> None:
        pass

    original = faust_fixes._original_on_partitions_assigned
    faust_fixes._original_on_partitions_assigned = faust_assigns
    try:
        await faust_fixes._on_partitions_assigned(consumer, {TP}, 2)
    finally:
        faust_fixes._original_on_partitions_assigned = original


class CommittedOffsets:
    """aiokafka 0.14's consumer as far as `seek_to_committed` goes: it seeks only to a
    commit above 0 (consumer.py: `if offset and offset > 0`)."""

    def __init__(self, commits: dict[Any, int | None], position: int) -> None:
        self.commits = commits
        self.positions = dict.fromkeys(commits, position)
        self.assigned = set(commits)

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    async def seek_to_committed(self) -> dict[Any, int | None]:
        for tp, offset in self.commits.items():
            if offset and offset > 0:
                self.positions[tp] = offset
        return dict(self.commits)

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset


async def test_a_commit_of_0_is_sought_like_any_other() -> None:
    """14.: an operator's reset to the earliest offset commits 0; aiokafka leaves the
    position where the last fetch put it, and faust's next seek to the committed offsets
    (end of recovery, a stopped flow) re-read nothing of what its streams had dropped."""
    zero, five, none = (faust.types.TP("interactions", p) for p in range(3))
    plain = CommittedOffsets({zero: 0, five: 5, none: None}, position=12)
    await plain.seek_to_committed()
    assert plain.positions == {zero: 12, five: 5, none: 12}  # the upstream behaviour
    fixed = CommittedOffsets({zero: 0, five: 5, none: None}, position=12)
    offsets = await faust_fixes.seek_all_to_committed(fixed)
    assert offsets == {zero: 0, five: 5, none: None}
    # No commit: the reset policy decides, and faust_fixes 8. reads again from where the
    # reading began.
    assert fixed.positions == {zero: 0, five: 5, none: 12}
    # Revoked while the commits were read (aiokafka would refuse the seek): left alone.
    moved = CommittedOffsets({zero: 0}, position=12)
    moved.assigned.clear()
    await faust_fixes.seek_all_to_committed(moved)
    assert moved.positions == {zero: 12}


def test_every_correction_is_installed() -> None:
    """The tests above call the corrections directly; this one checks that faust runs them."""
    from aiokafka.consumer.fetcher import Fetcher, FetchResult
    from faust.tables.recovery import Recovery
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    installed = {
        (Consumer, "_new_offset"): faust_fixes._new_offset,
        (Consumer, "_commit_tps"): faust_fixes._commit_tps,
        (Consumer, "ack"): faust_fixes._ack,
        (Consumer, "_add_gap"): faust_fixes._add_gap,
        (Consumer, "_wait_next_records"): faust_fixes._wait_next_records,
        (Consumer, "perform_seek"): faust_fixes._perform_seek,
        (Consumer, "seek"): faust_fixes._seek,
        (Consumer, "on_partitions_revoked"): faust_fixes._on_partitions_revoked,
        (Consumer, "on_partitions_assigned"): faust_fixes._on_partitions_assigned,
        (ThreadDelegateConsumer, "seek_to_committed"): faust_fixes._seek_to_committed,
        (FetchResult, "getall"): faust_fixes._getall,
        (Recovery, "on_recovery_completed"): faust_fixes._on_recovery_completed,
        (AIOKafkaConsumerThread, "seek_to_committed"): faust_fixes._thread_seek_to_committed,
        (AIOKafkaConsumerThread, "_fetch_records"): faust_fixes._fetch_records,
        (
            AIOKafkaConsumerThread,
            "_create_worker_consumer",
        ): faust_fixes._create_worker_consumer,
        (Fetcher, "_get_actions_per_node"): faust_fixes._actions_per_node,
        (Consumer, "on_buffer_drop"): faust_fixes._on_buffer_drop,
        (Conductor, "_compile_message_handler"): faust_fixes._compile_message_handler,
    }
    missing = [
        f"{cls.__name__}.{name}"
        for (cls, name), fn in installed.items()
        if getattr(cls, name) is not fn
    ]
    assert missing == []


async def test_a_queued_reread_of_a_partition_without_a_commit_survives_a_seek() -> None:
    """A seek to the committed offsets re-reads from the commit, so rewinds queued before it
    go; a partition with no commit is not sought at all, and its rewind must stay."""
    for committed, kept in ((None, {TP: 3}), (0, {}), (2, {})):
        consumer = ScriptedConsumer(list(range(20)))
        consumer.restarted(committed)
        faust_fixes.rewind(consumer, TP, 3, hold=True)
        await consumer.perform_seek()
        assert faust_fixes.ledger(consumer).rewinds == kept, committed


class UndecodableRecords:
    """aiokafka's PartitionRecords of a fetch from 41: a record, then a batch that cannot be
    decoded. Like aiokafka's, its generator is finished once it raised."""

    def __init__(self) -> None:
        self.next_fetch_offset = 41
        self._step = 0

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        from aiokafka.errors import UnsupportedCodecError

        self._step += 1
        if self._step == 1:
            self.next_fetch_offset = 42
            return Record(offset=41)
        if self._step == 2:
            raise UnsupportedCodecError("Libraries for snappy compression codec not found")
        raise StopIteration


async def test_an_undecodable_batch_keeps_the_other_partitions_records() -> None:
    """7.: aiokafka's fetched_records drains the partitions one after another; an exception
    from a later one dropped the records already drained for earlier ones (their positions
    had moved past them). On faust's fetch the batch is collected instead, the others are
    returned, and the fetch path sets the partition aside."""
    from aiokafka.consumer.fetcher import Fetcher, FetchResult

    good_tp = faust.types.TP("interactions", 1)
    states = {TP: PartitionState(position=41), good_tp: PartitionState(position=5)}
    assignment = SimpleNamespace(active=True, state_value=states.__getitem__)
    fetcher = SimpleNamespace(
        _closed=False,
        _records={
            good_tp: FetchResult(
                good_tp,
                assignment=assignment,
                partition_records=PartitionRecords(5, [5, 6], 7),
                backoff=0,
            ),
            TP: FetchResult(
                TP, assignment=assignment, partition_records=UndecodableRecords(), backoff=0
            ),
        },
        _subscriptions=SimpleNamespace(
            reassignment_in_progress=False, fetch_context=contextlib.nullcontext
        ),
        _notify=lambda future: None,
        _wait_consume_future=None,
    )
    fetcher.fetched_records = types.MethodType(Fetcher.fetched_records, fetcher)
    consumer = ScriptedConsumer([0])
    thread = SimpleNamespace(consumer=consumer)
    kafka = SimpleNamespace(_fetcher=fetcher, _closed=False)
    records = await faust_fixes._fetch_records(thread, kafka, {TP, good_tp}, timeout=0)
    assert {tp: [r.offset for r in rs] for tp, rs in records.items()} == {good_tp: [5, 6]}
    [found] = faust_fixes.ledger(consumer).found_undecodable
    assert (found.tp, found.offset) == (TP, 41)
    assert states[TP].position == 41  # read again from 41 once it can be decoded
    # Parked until its partition is paused: nothing handed out, the position kept (aiokafka
    # would move it to 42, past record 41, which never reached the stream).
    assert await faust_fixes._fetch_records(thread, kafka, {TP}, timeout=0) == {}
    assert states[TP].position == 41
    assert TP not in fetcher._records  # dropped: fetched again from 41 until set aside

    # Outside faust's fetch (the changelog reader's own consumer) it is raised, as before.
    bad = FetchResult(TP, assignment=assignment, partition_records=UndecodableRecords(), backoff=0)
    states[TP].paused = False
    with pytest.raises(faust_fixes.UndecodableBatch):
        bad.getall()


async def test_a_collected_undecodable_batch_is_set_aside_and_the_records_go_on() -> None:
    consumer = ScriptedConsumer([0, 1, 2])
    paused: list[Any] = []
    consumer.pause_partitions = paused.extend
    other = faust.types.TP("interactions", 1)

    async def fetched(active_partitions: Any, timeout: float) -> Any:
        faust_fixes.ledger(consumer).found_undecodable.append(
            faust_fixes.UndecodableBatch(TP, 7, ValueError("corrupt"))
        )
        return {other: [Record(offset=0)]}

    consumer._getmany = fetched
    records, _active = await consumer._wait_next_records(1.0)
    assert list(records) == [other]
    assert paused == [TP]
    assert faust_fixes.ledger(consumer).undecodable == {TP: 7}
    assert faust_fixes.ledger(consumer).found_undecodable == []
    # Set aside for this assignment: revoked, it is forgotten (and reported again if it
    # comes back still undecodable), so the watchdog's refetch may resume it.
    faust_fixes._on_revoked(consumer, {TP})
    assert faust_fixes.ledger(consumer).undecodable == {}


def test_a_fetch_waits_long_only_when_it_holds_every_partition_faust_reads() -> None:
    """A fetch that leaves out a partition faust reads (its records still buffered) waits
    FETCH_MAX_WAIT_MS, so that partition is fetched again soon after it is drained (issue
    19); one that holds all of them, faust's paused ones aside, waits FETCH_IDLE_WAIT_MS.
    Per broker: a fetch to one node is judged by that node's partitions."""
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.structs import TopicPartition

    def fetch(*tps: TopicPartition) -> Any:
        by_topic: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp in tps:
            by_topic[tp.topic].append((tp.partition, 0, 1_048_576))
        return FetchRequest(faust_fixes.FETCH_MAX_WAIT_MS, 1, 52_428_800, 1, list(by_topic.items()))

    src = [TopicPartition("interactions", p) for p in range(3)]
    log = [TopicPartition("pairs-changelog", p) for p in range(3)]
    assigned = [(tp, 1) for tp in src + log]
    paused = {faust.types.TP(tp.topic, tp.partition) for tp in log}  # faust's own TP type

    def waits(requests: list[tuple[int, Any]], faust_paused: set) -> list[int]:
        faust_fixes.wait_longer_when_whole(requests, assigned, faust_paused)
        return [request._max_wait_ms for _, request in requests]

    idle, short = faust_fixes.FETCH_IDLE_WAIT_MS, faust_fixes.FETCH_MAX_WAIT_MS
    assert waits([(1, fetch(*src, *log))], set()) == [idle]  # everything held
    assert waits([(1, fetch(*src))], paused) == [idle]  # the changelogs: faust's paused
    assert waits([(1, fetch(*src))], set()) == [short]  # changelogs buffered, read by faust
    assert waits([(1, fetch(*src[1:]))], paused) == [short]  # a source partition buffered
    # Two brokers: node 2 holds source partition 2; each fetch answers for its own node.
    assigned[2] = (src[2], 2)
    assert waits([(1, fetch(*src[:2])), (2, fetch())], paused) == [idle, short]
    assert waits([(1, fetch(src[0])), (2, fetch(src[2]))], paused) == [short, idle]


# -- 15. fetching resumes as soon as a stream's buffer has drained ---------------------------
class ConsumerThread:
    """An event loop on a thread of its own, as faust runs aiokafka's consumer."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def holding_fetcher(loop: asyncio.AbstractEventLoop, held: dict[Any, list[Any]]) -> Any:
    """aiokafka's real Fetcher.fetched_records over records it already holds (`held`, per
    partition), without a broker: nothing new is ever fetched."""
    from aiokafka.consumer.fetcher import Fetcher, FetchResult

    fetcher = Fetcher.__new__(Fetcher)
    fetcher._loop = loop
    fetcher._subscriptions = SimpleNamespace(
        reassignment_in_progress=False, is_assigned=lambda tp: True
    )
    fetcher._fetch_waiters = set()
    fetcher._wait_consume_future = None
    fetcher._closed = False
    fetcher._records = {}
    for tp, records in held.items():
        result = FetchResult.__new__(FetchResult)
        result.getall = lambda max_records=None, records=records: list(records)
        result.has_more = lambda: False
        fetcher._records[tp] = result
    return fetcher


class BufferedConsumer(ScriptedConsumer):
    """faust's Consumer whose stream buffer of `interactions` was full: the partition was
    taken out of the partitions it fetches (`on_buffer_full`), so `active` (the set faust
    passes to aiokafka, by reference) holds only `others`."""

    on_buffer_drop = Consumer.on_buffer_drop
    wait = Consumer.wait
    _wait_one = Consumer._wait_one

    def __init__(self, others: set[Any], thread: Any = None) -> None:
        super().__init__([0])
        self.active = set(others)
        self._buffered_partitions = {TP}
        self._thread = thread

    def _get_active_partitions(self) -> set[Any]:
        return self.active

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(30)  # faust's sleep(1), long enough to tell apart


def test_a_partition_taken_back_ends_the_wait_of_the_fetch_pending_for_the_others() -> None:
    """The fetch call waiting on the consumer thread was asked for the other partitions; the
    records aiokafka already holds for `interactions` come out as soon as faust takes it
    back. (faust's own on_buffer_drop leaves the call waiting up to a second: the worker sat
    idle 0.2-0.5 s at a time while those records waited.)"""
    profile = faust.types.TP("users", 0)
    worker_side = ConsumerThread()
    try:
        fetcher = holding_fetcher(worker_side.loop, {TP: ["r0", "r1"]})
        thread = SimpleNamespace(_consumer=SimpleNamespace(_fetcher=fetcher))
        thread.thread_loop = worker_side.loop
        consumer = BufferedConsumer({profile}, thread)
        pending = worker_side.run(fetcher.fetched_records(consumer.active, timeout=60))
        for _ in range(500):  # until it waits (bounded)
            if fetcher._fetch_waiters:
                break
            __import__("time").sleep(0.01)
        assert fetcher._fetch_waiters and not pending.done()

        consumer.on_buffer_drop(faust.types.TP("sellers", 0))  # never taken out: no change
        assert not faust_fixes.ledger(consumer).resumed.is_set()
        consumer.on_buffer_drop(TP)
        assert pending.result(timeout=10) == {TP: ["r0", "r1"]}
        assert consumer.active == {profile, TP}
        assert faust_fixes.ledger(consumer).resumed.is_set()
    finally:
        worker_side.stop()


async def test_with_every_partition_taken_out_the_fetch_loop_waits_for_the_first_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust sleeps a second in place of a fetch when its streams' buffers took every
    partition out; the bare faust agent of the benchmark reads one topic, so each full
    buffer cost it that second. Now the first partition taken back ends the wait."""
    monkeypatch.setattr(faust_fixes, "NOTHING_ACTIVE_WAIT_S", 30.0)  # told apart from 10 s
    # The worker's fetch path, and 15. alone (the benchmark's bare agent).
    for wait_next_records in (
        faust_fixes._wait_next_records,
        faust_fixes._wait_next_records_resuming,
    ):
        consumer = BufferedConsumer(set())
        waiting = asyncio.ensure_future(wait_next_records(consumer, 1.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        consumer.on_buffer_drop(TP)
        assert await asyncio.wait_for(waiting, 10) == ({}, {TP})
    # With a partition left to fetch, the fetch goes on as faust's does.
    consumer = BufferedConsumer({TP})
    consumer.offsets = [0, 1]
    records, active = await asyncio.wait_for(faust_fixes._wait_next_records(consumer, 1.0), 10)
    assert [r.offset for r in records[TP]] == [0, 1] and active == {TP}


def test_the_wake_reads_names_faust_and_aiokafka_still_have() -> None:
    """15. reaches aiokafka's fetcher through faust's consumer thread; the test above uses
    stand-ins for both, so this one checks the names on the real classes (a faust or aiokafka
    upgrade that renames them fails here, not silently in production)."""
    import inspect

    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app = faust.App("fetch-wake-names-test", broker="kafka://127.0.0.1:1")
    consumer = app.consumer  # built, never started: no connection is made
    try:
        thread = consumer._thread
        assert isinstance(thread, AIOKafkaConsumerThread)
        assert isinstance(thread.thread_loop, asyncio.AbstractEventLoop)
        assert "_consumer" in vars(AIOKafkaConsumerThread)  # the aiokafka consumer, once started
        assert "self._fetch_waiters = set()" in inspect.getsource(Fetcher.__init__)
        assert "self._create_fetch_waiter()" in inspect.getsource(Fetcher.fetched_records)
        assert consumer._buffered_partitions == set()
    finally:
        consumer._thread.thread_loop.close()


def test_the_bare_agents_correction_never_replaces_the_workers_fetch_path() -> None:
    """apply_prompt_resume (15. alone, for the benchmark's bare agent) after apply() keeps
    the worker's _wait_next_records, which holds 3., 4., 7. and 11. besides 15."""
    faust_fixes.apply()
    faust_fixes.apply_prompt_resume()
    assert Consumer._wait_next_records is faust_fixes._wait_next_records


def test_a_wake_while_the_consumer_thread_closes_its_loop_is_nothing() -> None:
    """The consumer thread may close its loop between the check and the call (stopping):
    the take-back runs inside a stream's get(), which must not raise."""

    def closing(callback: Any) -> None:
        raise RuntimeError("Event loop is closed")

    for loop in (
        SimpleNamespace(is_closed=lambda: False, call_soon_threadsafe=closing),
        SimpleNamespace(is_closed=lambda: True, call_soon_threadsafe=closing),
    ):
        fetcher = SimpleNamespace(_fetch_waiters=set())
        thread = SimpleNamespace(_consumer=SimpleNamespace(_fetcher=fetcher), thread_loop=loop)
        faust_fixes.wake_fetch_waiters(SimpleNamespace(_thread=thread))


# -- 16. records of a batch reader handed over without an event -------------------------------
class Reader:
    """A batch reader (checkpoint.Checkpoint's part the conductor sees)."""

    def __init__(self) -> None:
        self.got: list[tuple[int, Any]] = []
        self.full: asyncio.Future[None] | None = None  # set: the next arrival must wait

    def arrive(self, message: Any, tp: Any) -> Any:
        self.got.append((message.offset, tp))
        return self.full


def conductor_handler(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FlowControlEvent, list[int]]:
    """faust_fixes' conductor callback, with faust's own (lock, the partition's callback,
    the streams) replaced by a recorder."""
    to_streams: list[int] = []

    def faust_handler(self: Any) -> Any:
        async def on_message(message: Any) -> None:
            to_streams.append(message.offset)

        return on_message

    monkeypatch.setattr(faust_fixes, "_original_compile_message_handler", faust_handler)
    flow = FlowControlEvent(initially_suspended=False)
    conductor = SimpleNamespace(app=SimpleNamespace(flow_control=flow))
    return Conductor._compile_message_handler(conductor), flow, to_streams


def fetched(topic: str, offset: int) -> Record:
    """A record as faust's consumer makes it: `tp` is aiokafka's TopicPartition."""
    from aiokafka import TopicPartition

    return Record(topic=topic, partition=0, tp=TopicPartition(topic, 0), offset=offset)


async def test_a_batch_readers_records_go_to_it_with_faust_tp_not_to_the_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = Reader()
    faust_fixes.read_in_batches("t16", reader)
    try:
        handler, _, to_streams = conductor_handler(monkeypatch)
        for offset in (4, 5):
            await handler(fetched("t16", offset))
        assert reader.got == [(4, faust.types.TP("t16", 0)), (5, faust.types.TP("t16", 0))]
        assert all(type(tp) is faust.types.TP for _, tp in reader.got)  # faust's pause asserts it
        assert to_streams == []
        faust_fixes.read_in_batches("t16", None)  # the reader stopped: faust's streams again
        await handler(fetched("t16", 6))
        assert to_streams == [6] and len(reader.got) == 2
    finally:
        faust_fixes.read_in_batches("t16", None)


async def test_other_topics_keep_fausts_own_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    faust_fixes.read_in_batches("t16", Reader())
    try:
        handler, _, to_streams = conductor_handler(monkeypatch)
        await handler(fetched("another", 1))
        assert to_streams == [1]
    finally:
        faust_fixes.read_in_batches("t16", None)


async def test_a_batch_reader_gets_nothing_while_the_flow_is_stopped_and_waits_when_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = Reader()
    faust_fixes.read_in_batches("t16", reader)
    try:
        handler, flow, _ = conductor_handler(monkeypatch)
        flow.suspend()  # a rebalance
        delivery = asyncio.ensure_future(handler(fetched("t16", 1)))
        await asyncio.sleep(0.01)
        assert reader.got == [] and not delivery.done()
        flow.resume()
        await asyncio.wait_for(delivery, 5)
        assert [offset for offset, _ in reader.got] == [1]
        reader.full = asyncio.get_running_loop().create_future()
        delivery = asyncio.ensure_future(handler(fetched("t16", 2)))
        await asyncio.sleep(0.01)
        assert not delivery.done()  # the fetch loop waits for room, as for a stream's queue
        reader.full.set_result(None)
        await asyncio.wait_for(delivery, 5)
    finally:
        faust_fixes.read_in_batches("t16", None)
