"""Corrections to faust 0.15.3's consumer, applied when the app is built.

Every one answers a way faust loses sight of a record around a restart or a rebalance;
docs/exactness.md tells each with the evidence. faust's consumer (transport/consumer.py)
runs the aiokafka consumer in a thread of its own and feeds streams from `_drain_messages`.

1. Commit only from the committed offset (`_new_offset`). faust commits the end of the first
   run of consecutive acked offsets; its check that the run starts where the last commit
   ended accepts a run starting one offset later and is skipped when the committed offset
   is 0. Here a run must start exactly at the committed offset, or at a known gap.
   A commit the broker refused is not a commit (`_commit_tps`): faust recorded it as done.

2. Ack only what a stream took in (`ack`). A stream skips, and acks, an event fetched in an
   older generation or while the flow is stopped for a rebalance; acked, it counts as
   processed while the copy read again after the seek may not be.

3. Gaps from what the broker returned, not from faust's read offset (`_add_gap`,
   `_wait_next_records`). faust infers "offsets that do not exist" (compaction, transaction
   markers, aborted records) from jumps of its read offset, which is wrong three ways: a
   read offset of 0 counts as none (`if gap > 1 and r_offset`), after a seek the read offset
   means "next" where elsewhere it means "last read" (so one missing offset after a seek is
   never a gap and holds the commit for good), and a seek made while `_drain_messages` is
   still handing out an earlier fetch turns that fetch's next record into a false gap over
   everything in between (a commit then passes records never counted: issue 16, "lost for
   good"). Here a gap is recorded only where aiokafka returned records of one fetch
   position with offsets missing between them or between that position and the first of
   them or after the last of them up to where the read stopped, which it does only for
   offsets that hold no deliverable record (a fetch of only a marker hands nothing out and
   is counted in front of the next records). The position is the one aiokafka read from
   (`FetchResult.getall`), not where faust's last seek is believed to have left it:
   faust's seek to the committed offsets seeks one partition at a time between broker
   round trips, records fetched meanwhile are handed out past it, and the next fetch then
   began hundreds of offsets after the seek's offset. Taken for a jump over records with
   none, that made a gap over records the stream never counted, and the commit passed
   them (seen with two workers after a SIGKILL, 6 December). The race is upstream's
   faust-streaming/faust#216 in another branch: #217 and #253 put the seek before the
   flow resumes, but in 0.15.3 `_restart_recovery` resumes the flow (when no table needs
   recovery, and for the standby partitions) before `on_recovery_completed` makes the
   stream partitions fetchable and seeks.

4. Re-reads at a fetch boundary (`rewind`). A seek while `_drain_messages` is still handing
   out an earlier fetch is undone by it: those records move faust's read offset past the
   seek, and the re-read records are then dropped as already read (issue 16, "stalled
   commit"). Rewinds are queued and applied just before the next fetch, when no fetched
   record is in flight, and the read offset is cleared so nothing re-read is dropped.
   faust's end-of-recovery seek to the committed offsets queues one itself for a partition
   whose records were handed out around it (faust then clears what its streams had not
   taken yet): read again from the commit at once, not after the stall watch.

5. Read committed (`_create_worker_consumer`). faust reads `read_uncommitted` unless its own
   transactions are on, so records of aborted transactions were counted. The same place
   shortens faust's fetch wait (1.5 s) to FETCH_MAX_WAIT_MS: a held fetch of quiet
   partitions kept the busy ones from being fetched. A fetch that holds every partition of
   its broker faust reads keeps none of them waiting (a record of any answers it at once),
   so it waits FETCH_IDLE_WAIT_MS (aiokafka 0.14's `Fetcher._get_actions_per_node`): an
   idle worker fetched 33 times a second, 5-6 % of a core. faust's pause is its own (it
   stops reading the active tables' changelogs after recovery, aiokafka still fetches
   them once and keeps the records), so those partitions do not count as left out.

6. Markers at a partition's very end (`_new_offset`, the watchdog's `record_gap`).

7. An undecodable record batch (aiokafka 0.14 `FetchResult.getall`: an unknown codec, a
   corrupt batch) crashed faust's fetcher and the worker, again after every restart. It is
   now one line naming the partition, the offset and the cause; that partition is set aside
   and the others go on. On faust's fetches the batch is not raised through aiokafka's
   `fetched_records` (which dropped the records it had already drained for other
   partitions of the same call: their positions had moved past them, so they waited for
   the stall watch's re-read) but collected, and set aside once the fetch returns.

8. A committed offset to count from, always (`perform_seek`). faust records a committed
   offset of 0, and no commit yet, as None, and with None its commit rule starts wherever
   the lowest acked offset is: records dropped before the stream's first one of a partition
   were committed past. Here None becomes the offset the reading starts from.

9. A rebuild reads the changelogs in bulk (`Recovery._build_offsets`). faust restores a
   table record by record through its stream machinery (about a thousand records a
   second); before it starts, the active changelog partitions are read with a consumer of
   their own and written a fetch at a time, and faust starts after them.

10. A static member's assignment of an older topic layout (`PartitionAssignor.on_assignment`).
   A static member (group.instance.id, README "Rolling restarts") that rejoins a stable group
   gets its previous assignment back without a rebalance (KIP-345), also when the topics
   were deleted and created again with another partition count meanwhile: it then held
   partitions that no longer exist and nobody held the new ones, and its recovery waited
   for ever. An assignment that does not cover each topic's partitions exactly asks for a
   rebalance: a JoinGroup from a member the broker knows that leads the group or whose
   metadata changed starts one (faust's metadata carries the member's assignment).

11. Standby records a fetch at a time (`_wait_next_records`). faust passes every record of
   a standby changelog partition through its stream machinery and recovery loop before it
   writes it, about 16 µs of CPU per record; they are now taken out of each fetch and
   written as one RocksDB write batch per partition, with faust's persisted offset, once
   faust's recovery has sought the partition in this generation (`Recovery._seek_offsets`).

12. A record handed to its stream without four tasks (`Consumer.wait_first`). faust's fetch
   loop delivers each record under mode's wait_first, which makes four tasks and cancels
   three of them per record; the delivery is now run at once, and only one that has to
   wait (a full stream queue) goes through wait_first.

13. No record handed out between the end of recovery and its seek
   (`Recovery.on_recovery_completed`). With tables that need no recovery, and for standby
   partitions, faust resumes the consumer's flow first; `on_recovery_completed` then makes
   the stream partitions fetchable, seeks them to the committed offsets and resumes the
   app's flow control, which clears what the streams had not taken yet. Records handed
   out in between were cleared and read again (3., 4.): up to hundreds per partition at
   every takeover. The consumer's flow is now stopped while it runs; faust resumes it
   after the clear, as upstream's faust-streaming/faust#253 orders it.

14. A commit of exactly 0 is sought like any other (`AIOKafkaConsumerThread.seek_to_committed`).
   aiokafka 0.14's `seek_to_committed` seeks only to a commit above 0 (`if offset and offset
   > 0`), so a partition whose group offset is 0 (an operator's reset to the earliest
   offset, `kafka-consumer-groups --reset-offsets --to-earliest`) kept its fetch position
   wherever the last fetch left it. faust seeks to the committed offsets again within one
   assignment (at the end of recovery; in `getmany` whenever the flow is stopped), and
   records handed out before such a seek and cleared with the streams' queues were then
   never read again, while the fetch bookkeeping (3., 4.) and the watchdog's end rule (6.)
   took the seek as done: its next offset 0 and a position past cleared records looked
   like offsets without records, which the commit could pass.

15. Fetching resumes as soon as a stream's buffer has drained (`Consumer.on_buffer_drop`).
   faust's back-pressure (faust-streaming/faust#53) stops fetching a topic's partitions when
   its stream's buffer is 80 % full (`on_buffer_full` takes them out of the partitions it
   asks aiokafka for) and takes them back when the buffer is down to 40 %. The fetch call
   already waiting on the consumer thread then still waits, up to faust's one second, for a
   record of the other partitions: records of the partitions taken back, which aiokafka
   already holds, do not end that wait. At 80 % of the worker's capacity it sat idle for
   0.2-0.5 s several times a second while records waited (freshness p50 over a second).
   Taking a partition back now wakes that wait, and when every partition was taken out,
   faust's one-second sleep in place of a fetch ends at the first one taken back. (Only
   the back-pressure's take-back: partitions resumed at the end of a recovery or given by
   an assignment are fetched from faust's next call, as before, within a second.)

16. Records of a batch reader handed over without an event
   (`Conductor._compile_message_handler`).
   faust hands each record to a stream as an event: the conductor decodes it, puts it on
   the stream's queue, and the stream takes it, tracks it, runs its sensors and yields it,
   about as much CPU per record as the worker's own counting (the benchmark's faust floor
   is that path and nothing else). A source stream that reads in batches (checkpoint.py)
   registers a reader for its topic (`read_in_batches`); the conductor's callback then
   hands each record of that topic to the reader, after waiting for the app's flow
   control as faust's delivery does, without faust's lock and per-partition callback. The
   reader queues it on a flow-controlled queue that is emptied when the flow resumes, as a
   stream's queue is, and at its take tracks the record or drops it by the stream's rules
   (older generation, flow stopped). Its back-pressure is faust's: the same partition
   pause at 80 % of the queue, the same take-back; a wait for room that the rebalance's
   emptying of the queue cancels drops that record too (faust's own delivery waits in a
   task of its own, so the cancellation never reaches the fetch loop). faust's producer
   buffer, which faust's delivery also waits for, is not used by the worker's output
   (kafka/outbox.py).

17. No fixed second before the tables start (`TableManager.on_start`). faust's table manager
   sleeps one second before it registers the tables' changelogs and starts recovery, so
   that tables declared while the app starts are in by then. streamapp declares every
   table when its modules are imported (worker/tables.py), before the worker starts, so
   the second was only a wait: every start, a restart after a crash and a rebuild from the
   changelogs included, was a second longer (the benchmark's restart with its data dir
   intact: about 2.5 s, of which this second).

18. A table's RocksDB options applied to an existing database too (`RocksDBOptions.open`).
   faust opens each partition database with rocksdict's `Rdict(path, options)`, which
   applies the options' table settings (block cache, bloom filters) only to a database it
   creates: after any restart the databases ran with an 8 MiB cache of their own and no
   bloom filters, and a read of a missing key searched every table file (kafka/rocksdb.py,
   open_db). Opened through open_db, with bloom filters in the memtables as well.

The check `faust.__version__ == FAUST_VERSION` refuses any other faust at start-up: each
correction was written against that version's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from faust.assignor.client_assignment import ClientAssignment
from faust.assignor.partition_assignor import PartitionAssignor
from faust.stores.rocksdb import RocksDBOptions
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.conductor import Conductor
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.services import WaitResults
from rocksdict import AccessType, ReadOptions, WriteBatch

from streamapp.kafka import changelog_restore
from streamapp.kafka.rocksdb import memtable_filters, open_db

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"
POSITION_TIMEOUT_S = 30.0


def version_problem() -> str | None:
    """One line when the installed faust is not the one these corrections were written for."""
    if faust.__version__ != FAUST_VERSION:
        return (
            f"streamapp's corrections to faust were written for faust-streaming {FAUST_VERSION}, "
            f"but {faust.__version__} is installed; install {FAUST_VERSION} "
            "(pip install -e .) or review streamapp/worker/faust_fixes.py for the new version"
        )
    return None


@dataclass
class FetchLedger:
    """What the fetch path knows per partition: the next offset aiokafka should return
    (None: unknown, e.g. before the first record after an assignment), rewinds waiting for
    the next fetch boundary, and a counter of every position change (a fetch that saw one
    is not used for gaps)."""

    next_offset: dict[Any, int | None] = field(default_factory=dict)
    rewinds: dict[Any, int] = field(default_factory=dict)
    seeks: int = 0
    rewinds_applied: int = 0
    # Per partition, (last offset, wall time) of recent fetches: when a record was fetched.
    fetched: dict[Any, deque[tuple[int, float]]] = field(default_factory=dict)
    undecodable: dict[Any, int | None] = field(default_factory=dict)  # partitions set aside
    found_undecodable: list[Any] = field(default_factory=list)  # by the consumer thread (7.)
    # Per partition, the lowest offset the stream skipped and that was not processed since:
    # no commit passes it (checkpoint re-reads).
    holds: dict[Any, int] = field(default_factory=dict)
    # Per partition, the committed offset the last seek to the committed offsets found
    # (None: no commit yet).
    seeked: dict[Any, int | None] = field(default_factory=dict)
    reread_from: dict[Any, int] = field(default_factory=dict)  # the last rewind applied
    noted: dict[Any, int] = field(default_factory=dict)  # per partition, fetches with records
    noted_at_assignment: dict[Any, int] | None = None  # `noted` when partitions were assigned
    first_read: dict[Any, int] = field(default_factory=dict)  # since then: the first start
    # Per standby changelog partition, (generation, seek count) once faust's recovery has
    # sought it to its persisted offset in that generation: fetches begun after that are
    # written by 11.
    standby_from: dict[Any, tuple[int, int]] = field(default_factory=dict)
    # Set when a partition's fetching resumes after its stream's buffer drained (15.).
    resumed: asyncio.Event = field(default_factory=asyncio.Event)

    def fetched_at(self, tp: Any, offset: int) -> float | None:
        for last, at in self.fetched.get(tp, ()):
            if last >= offset:
                return at
        return None


def ledger(consumer: Any) -> FetchLedger:
    found = consumer.__dict__.get("_streamapp_ledger")
    if found is None:
        found = consumer.__dict__["_streamapp_ledger"] = FetchLedger()
    return found


# -- 1. commit only from the committed offset -------------------------------------------
_original_new_offset = Consumer._new_offset


def _new_offset(self: Any, tp: Any) -> int | None:
    book = ledger(self)
    hold = book.holds.get(tp)
    if hold is not None and (
        hold in self._acked_index[tp] or (self._committed_offset[tp] or -1) > hold
    ):
        del book.holds[tp]  # the skipped record was processed (or committed) after all
        hold = None
    acked_before = set(self._acked[tp]) if hold is not None else set()
    offset = _new_offset_unguarded(self, tp)
    if offset is None or hold is None or offset <= hold:
        return offset
    # A commit past a record the stream skipped and that was not read again yet: a guard
    # (the checkpoint processes nothing past such a record, and every run starts at the
    # committed offset), kept because a commit past it loses the record for good. Commit
    # up to it; the rest of the run is acked again.
    committed = self._committed_offset[tp]
    # Only what was really processed goes back: not the skipped offsets themselves, which
    # reach faust's run as gaps (or with no commit yet to start from).
    redo = sorted(o for o in acked_before if hold <= o < offset)
    self._acked[tp].extend(redo)
    self._acked[tp].sort()
    self._acked_index[tp].update(redo)
    log.warning(
        "%s: a commit up to %d would pass offset %d, skipped by faust and not read again "
        "yet; committing up to it",
        tp,
        offset,
        hold,
    )
    return hold if committed is None or hold > committed else None


def _new_offset_unguarded(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    committed = self._committed_offset[tp]
    if acked and committed is not None:
        head = min(acked)
        if head > committed and not self._gap[tp].overlaps(committed):
            return None  # the record at `committed` was not processed yet
    if not acked and committed is not None:
        # faust only looks at gaps below an acked offset: markers at the very end of a
        # partition (nothing acked after them) would hold the commit for good.
        return _past_gaps(self._gap[tp], committed)
    gaps = self._gap[tp]
    if acked and gaps:
        # An offset acked is no gap. faust adds every gap offset to the acked list without
        # looking, and a duplicate ends its "consecutive run": the commit then advances
        # one offset per commit interval.
        for offset in acked:
            if gaps.overlaps(offset):
                gaps.chop(offset, offset + 1)
    return _original_new_offset(self, tp)


def _past_gaps(gaps: Any, committed: int) -> int | None:
    end = committed
    while gaps.overlaps(end):
        end = max(interval.end for interval in gaps[end])
    if end == committed:
        return None
    gaps.chop(0, end)
    return end


# -- 1b. a failed commit is not a commit -------------------------------------------------
_original_commit_tps = Consumer._commit_tps


async def _commit_tps(self: Any, tps: Any, start_new_transaction: bool) -> bool:
    tps = list(tps)
    before = {}
    for tp in tps:
        acked = self._acked.get(tp)
        before[tp] = (self._committed_offset.get(tp), min(acked) if acked else None)
    done = False
    try:
        done = await _original_commit_tps(self, tps, start_new_transaction)
    finally:
        if not done:
            _undo_commit(self, before)
    return done


def _undo_commit(self: Any, before: Mapping[Any, tuple[int | None, int | None]]) -> None:
    """faust takes a committed run out of the acked offsets and records it as committed
    even when the broker refused the commit (`_commit_offsets` updates `_committed_offset`
    whatever `_commit` returned; aiokafka's "already rebalanced" refusal returns False
    silently). The broker's offset then stays behind for good while the worker believes
    it committed: seen as commits held short of the end on every partition of a topic
    after a restart (issue 16). Put the run back, so the next commit tries it again."""
    for tp, (committed, head) in before.items():
        now = self._committed_offset.get(tp)
        start = committed if committed is not None else head
        if now is None or now == committed or start is None or now <= start:
            continue
        if committed is None:
            self._committed_offset.pop(tp, None)
        else:
            self._committed_offset[tp] = committed
        index = self._acked_index[tp]
        redo = [offset for offset in range(start, now) if offset not in index]
        acked = self._acked[tp]
        acked.extend(redo)
        acked.sort()
        index.update(redo)
        log.warning(
            "the broker did not take the commit of %s up to %d (a rebalance?); it is tried again",
            tp,
            now,
        )


# -- 2. ack only what a stream took in --------------------------------------------------
_original_ack = Consumer.ack
_skipped = [0]


def _ack(self: Any, message: Any) -> bool:
    if not message.tracked:  # skipped by the stream, never processed: not committable
        _skipped[0] += 1
        if _skipped[0] == 1:
            log.info(
                "faust skipped %s[%d]@%d around a rebalance; it is not committed but read "
                "again after the seek",
                message.topic,
                message.partition,
                message.offset,
            )
        return False
    return _original_ack(self, message)


# -- 3 and 4. gaps from the broker's answers; re-reads at a fetch boundary ---------------
_original_add_gap = Consumer._add_gap


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    return None  # replaced by _note_fetched (3.)


_original_wait_next_records = Consumer._wait_next_records


async def _wait_next_records(self: Any, timeout: float) -> Any:
    book = ledger(self)
    if book.rewinds and self.flow_active:
        await _apply_rewinds(self, book)
    if await _waited_for_resume(self, book):
        return {}, self._get_active_partitions()
    seeks, generation = book.seeks, self.app.consumer_generation_id
    try:
        records, active = await _original_wait_next_records(self, timeout)
    except UndecodableBatch as exc:
        _set_aside(self, book, exc)
        return {}, None
    finally:
        while book.found_undecodable:
            _set_aside(self, book, book.found_undecodable.pop(0))
    if records:
        stale = book.seeks != seeks or self.app.consumer_generation_id != generation
        _apply_standby_fetch(self, book, records, active, None if stale else seeks)
        _note_fetched(self, book, records, stale)
    return records, active


class UndecodableBatch(Exception):
    """A fetched record batch that cannot be decoded (an unknown codec, a corrupt batch),
    with the partition and offset aiokafka was at (7.)."""

    def __init__(self, tp: Any, offset: int | None, cause: BaseException) -> None:
        super().__init__(f"{tp.topic}[{tp.partition}] at offset {offset}: {cause!r}")
        self.tp, self.offset, self.cause = tp, offset, cause


_original_getall = FetchResult.getall


class FetchedRun(list):  # type: ignore[type-arg]
    """The records one `FetchResult.getall` handed out; `start`, the position from which
    aiokafka read up to them without handing out anything else, and `end`, where that read
    stopped (past a marker after the last record; None: not known) (3.). faust passes the
    list on unchanged to `_wait_next_records`."""

    __slots__ = ("end", "start")

    def __init__(self, records: list[Any], start: int, end: int | None = None) -> None:
        super().__init__(records)
        self.start, self.end = start, end


_QUIET = "_streamapp_quiet"  # on aiokafka's TopicPartitionState: (from, to) read, no record
# Set while faust's consumer thread runs aiokafka's fetched_records (7.): an undecodable
# batch found then is collected here instead of raised.
_undecodable_found: ContextVar[list[UndecodableBatch] | None] = ContextVar(
    "streamapp_undecodable_found", default=None
)


def _getall(self: Any, max_records: Any = None) -> Any:
    # aiokafka hands records out only from the partition's position, which is then this
    # (FetchResult.check_assignment).
    tp = self._topic_partition
    fetched = self._partition_records
    start = getattr(fetched, "next_fetch_offset", None)
    try:
        records = _original_getall(self, max_records)
    except (UnsupportedCodecError, CorruptRecordException) as exc:
        found = UndecodableBatch(tp, start, exc)
        collected = _undecodable_found.get()
        if collected is None:  # not faust's fetch: raised, as aiokafka would
            raise found from exc
        # Nothing handed out, the position not moved: aiokafka's next getall of this fetch
        # hands out nothing either (its records are done), and the batch is fetched again
        # until the partition is set aside.
        collected.append(found)
        return []
    state = self._assignment.state_value(tp) if start is not None else None
    if state is None or not state.has_valid_position:
        return records
    # A fetch of only a transaction's marker (or aborted records) moves the position and
    # hands out nothing, so no fetch path sees it: remembered here, on this assignment's
    # state of the partition, and the next records are known to follow offsets without any.
    quiet = state.__dict__.get(_QUIET)
    if not records:
        # Read past by this call itself (not a position sought elsewhere meanwhile, which
        # makes aiokafka drop the fetch unread).
        end = fetched.next_fetch_offset
        if end > start and state.position == end:
            state.__dict__[_QUIET] = (quiet[0] if quiet and quiet[1] == start else start, end)
        return records
    if quiet and quiet[1] == start:
        start = quiet[0]
    state.__dict__.pop(_QUIET, None)
    end = fetched.next_fetch_offset
    return FetchedRun(records, start, end if state.position == end else None)


def _set_aside(self: Any, book: FetchLedger, exc: UndecodableBatch) -> None:
    """One line, and the partition is no longer fetched (its undecodable batch stays parked
    in aiokafka, so nothing is fetched again for it): the other partitions go on. Its lag
    shows in streamapp_commit_lag; a new assignment of it, or a restart, tries it again."""
    tp = exc.tp
    if tp not in book.undecodable:
        log.error(
            "%s[%d]: cannot decode a record batch fetched from offset %s (%s: %s); this "
            "partition is no longer read (the others go on) until it is assigned again or "
            "the worker is restarted with what it needs to read it",
            tp.topic,
            tp.partition,
            exc.offset,
            type(exc.cause).__name__,
            exc.cause,
        )
    book.undecodable[tp] = exc.offset
    self.pause_partitions([tp])


async def _apply_rewinds(self: Any, book: FetchLedger) -> None:
    rewinds, book.rewinds = book.rewinds, {}
    assigned = self.assignment()
    for tp, offset in rewinds.items():
        if tp not in assigned:
            continue
        await self.seek(tp, offset)
        # Nothing at or after `offset` is "already read" any more: faust drops a record
        # below its read offset, and records re-read from here must all reach the stream.
        self._read_offset[tp] = None
        book.rewinds_applied += 1
        book.reread_from[tp] = offset


def _note_fetched(self: Any, book: FetchLedger, records: Mapping[Any, Any], stale: bool) -> None:
    acks_enabled_for = self.app.topics.acks_enabled_for
    expected = book.next_offset
    now = time.time()
    for tp, batch in records.items():
        if not batch or not acks_enabled_for(tp.topic):
            continue
        book.noted[tp] = book.noted.get(tp, 0) + 1
        start = getattr(batch, "start", None)
        if start is not None and tp not in book.first_read:
            book.first_read[tp] = start
        marks = book.fetched.get(tp)
        if marks is None:
            marks = book.fetched[tp] = deque(maxlen=32)
        marks.append((batch[-1].offset, now))
        if stale:
            # This fetch overlapped a seek: its records may come from before or after it,
            # and faust may still hand them out. What comes next is unknown until a record
            # says so (keeping the seek's offset here made a false gap over records that
            # were delivered: the commit then crawled one offset at a time).
            expected[tp] = None
            continue
        # Where aiokafka read these from, when it says (3.): the offsets from there to the
        # first record hold none. Else where the last fetch or seek left the position.
        due = expected.get(tp) if start is None else start
        for record in batch:
            offset = record.offset
            if due is not None and offset > due:
                _record_gap(self, book, tp, due, offset)
            due = offset + 1
        # ... and from the last record to where that read stopped (a marker after it).
        end = getattr(batch, "end", None)
        if end is not None and end > due:
            _record_gap(self, book, tp, due, end)
            due = end
        expected[tp] = due


def _record_gap(self: Any, book: FetchLedger, tp: Any, start: int, end: int) -> None:
    """Offsets start..end-1 hold no record a stream will ever see: committable."""
    committed = self._committed_offset[tp]
    if committed is not None:
        start = max(start, committed)
    if start < end:
        gaps = self._gap[tp]
        gaps.addi(start, end)
        gaps.merge_overlaps()
        hold = book.holds.get(tp)
        if hold is not None and start <= hold < end and book.reread_from.get(tp, end) <= hold:
            # The re-read shows that the skipped offset holds no record (a transaction
            # marker found skipped from a fetch that overlapped a seek): nothing to wait for.
            del book.holds[tp]


def rewind(consumer: Any, tp: Any, offset: int, hold: bool = False) -> None:
    """Read `tp` again from `offset`, at the next fetch boundary (4.). With `hold`, no
    commit passes `offset` before the record there is processed (records the stream
    skipped)."""
    book = ledger(consumer)
    current = book.rewinds.get(tp)
    book.rewinds[tp] = offset if current is None else min(current, offset)
    if hold:
        held = book.holds.get(tp)
        book.holds[tp] = offset if held is None else min(held, offset)


_original_perform_seek = Consumer.perform_seek


async def _perform_seek(self: Any) -> None:
    book = ledger(self)
    book.seeks += 1
    queued, book.rewinds = book.rewinds, {}  # a seek to a commit re-reads all of them anyway
    try:
        await _original_perform_seek(self)
    finally:
        book.seeks += 1
    for tp, offset in queued.items():
        if book.seeked.get(tp) is None:  # no commit, so no seek: still to be read again
            rewind(self, tp, offset)
    await _pin_start_offsets(self, book)


async def _pin_start_offsets(self: Any, book: FetchLedger) -> None:
    """Every assigned partition of a stream gets a committed offset to count from (8.).

    faust records a committed offset of 0 as None (`perform_seek`: `offset if offset else
    None`), and a partition with no commit yet has None too. With None its commit rule
    starts the consecutive run at the lowest acked offset, wherever that is: records faust
    read but never handed to the stream before the first one it did (a fetch dropped for a
    flow stop, a generation change, a paused partition) were committed past, never counted.
    Here None becomes the offset the reading starts from: the commit, the hole check and
    the stall watch then all start there."""
    acks_enabled_for = self.app.topics.acks_enabled_for
    for tp in list(self.assignment()):
        if self._committed_offset.get(tp) is not None or not acks_enabled_for(tp.topic):
            continue
        start = book.seeked.get(tp)
        if start is None:  # no commit: where the reset policy put the fetch position
            try:
                start = await asyncio.wait_for(self.position(tp), POSITION_TIMEOUT_S)
            except Exception as exc:  # revoked meanwhile, or the broker is away
                log.warning("%s: no start offset (%r); commits wait for one", tp, exc)
                continue
        if start is not None and start >= 0 and self._committed_offset.get(tp) is None:
            self._committed_offset[tp] = start


_original_seek_to_committed = ThreadDelegateConsumer.seek_to_committed


async def _seek_to_committed(self: Any) -> Any:
    book = ledger(self)
    # faust pauses every partition when it is assigned and makes the stream partitions
    # fetchable again just before this seek: records noted since the assignment were
    # handed out around it.
    noted = book.noted_at_assignment if book.noted_at_assignment is not None else book.noted
    noted = dict(noted)
    book.seeks += 1
    offsets = await _original_seek_to_committed(self)
    book.seeks += 1
    for tp, offset in offsets.items():
        # Where reading starts again (None: no commit yet, the reset policy decides).
        start = offset if offset is not None and offset >= 0 else None
        book.seeked[tp] = start
        if book.noted.get(tp) == noted.get(tp):
            book.next_offset[tp] = start  # the next offset a fetch returns
            continue
        # Records of the partition were handed out around the seek: aiokafka seeks one
        # partition after another between broker round trips, so its position may be past
        # the seek, and faust clears what its streams had not taken yet when it resumes
        # the flow. Unknown until a fetch says (3.), and read again from the commit at the
        # next fetch boundary (4.): a partition with nothing more to fetch would otherwise
        # wait for the stall watch.
        book.next_offset[tp] = None
        if start is None:
            # No commit: aiokafka did not seek, and the reading started where the first
            # fetch since the assignment began, not where the position is now (the pin to
            # a start offset, 8., would otherwise take that and pass what was read).
            start = book.seeked[tp] = book.first_read.get(tp)
        if start is not None:
            rewind(self, tp, start)
    book.noted_at_assignment = None
    return offsets


_original_on_recovery_completed = Recovery.on_recovery_completed


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    # 13.: nothing is handed out before the seek and the clear; faust's own code resumes
    # the flow at its end (on every path that goes on; an early return means another
    # rebalance, which stops the flow itself and resumes it at its own end).
    self.app.consumer.stop_flow()
    await _original_on_recovery_completed(self, generation_id)


_original_on_partitions_assigned = Consumer.on_partitions_assigned


async def _on_partitions_assigned(self: Any, assigned: Any, generation_id: int = 0) -> None:
    book = ledger(self)
    book.noted_at_assignment = dict(book.noted)
    book.first_read.clear()
    await _original_on_partitions_assigned(self, assigned, generation_id)


_original_seek = Consumer.seek


async def _seek(self: Any, partition: Any, offset: int) -> None:
    book = ledger(self)
    book.seeks += 1
    await _original_seek(self, partition, offset)
    book.next_offset[partition] = offset


def _on_revoked(self: Any, revoked: Any) -> None:
    book = ledger(self)
    for tp in revoked:
        book.next_offset.pop(tp, None)
        book.seeked.pop(tp, None)
        book.reread_from.pop(tp, None)
        book.rewinds.pop(tp, None)
        book.holds.pop(tp, None)
        # Set aside for this assignment only: given back, it is fetched (and, if still
        # undecodable, set aside and reported) again.
        book.undecodable.pop(tp, None)


_original_on_partitions_revoked = Consumer.on_partitions_revoked


async def _on_partitions_revoked(self: Any, revoked: Any) -> None:
    _on_revoked(self, revoked)
    await _original_on_partitions_revoked(self, revoked)


_original_fetch_records = faust_aiokafka.AIOKafkaConsumerThread._fetch_records


async def _fetch_records(self: Any, consumer: Any, *args: Any, **kwargs: Any) -> Any:
    """faust's fetch on its consumer thread: undecodable batches are collected for the
    fetch path to set aside (7.), and the other partitions' records are returned."""
    found: list[UndecodableBatch] = []
    token = _undecodable_found.set(found)
    try:
        return await _original_fetch_records(self, consumer, *args, **kwargs)
    finally:
        _undecodable_found.reset(token)
        ledger(self.consumer).found_undecodable.extend(found)


# -- 14. a commit of exactly 0 is sought like any other -------------------------------------
async def seek_all_to_committed(consumer: Any) -> Any:
    """aiokafka's `seek_to_committed`, and a seek of its own to every commit of 0, which
    aiokafka skips (14.). Runs on the consumer's own thread, as faust's call does."""
    offsets = await consumer.seek_to_committed()
    assigned = consumer.assignment()  # a rebalance may have moved some meanwhile
    for tp, offset in offsets.items():
        if offset == 0 and tp in assigned:
            consumer.seek(tp, 0)
    return offsets


async def _thread_seek_to_committed(self: Any) -> Any:
    return await self.call_thread(seek_all_to_committed, self._ensure_consumer())


# -- 5. read committed ------------------------------------------------------------------
_original_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


FETCH_MAX_WAIT_MS = 30


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(self, transport)
    # aiokafka builds its Fetcher from these in start(), which has not run yet.
    consumer._isolation_level = "read_committed"
    # faust asks the broker to hold a fetch up to 1.5 s for data. aiokafka has one fetch in
    # flight per broker, built from the partitions with nothing buffered at that moment: when
    # it holds only quiet partitions (standby changelogs, profiles), the busy ones cannot be
    # fetched again until it returns. The benchmark's per-step breakdown showed it: records
    # waited up to 2 s before faust fetched them at half capacity (issue 19).
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
    start, paused = consumer.start, self.consumer._paused_partitions

    async def start_and_tell() -> None:
        await start()
        # faust's paused partitions (a set it changes in place), for _actions_per_node.
        consumer._fetcher._streamapp_faust_paused = paused

    consumer.start = start_and_tell
    return consumer


FETCH_IDLE_WAIT_MS = 500
_original_actions_per_node = Fetcher._get_actions_per_node


def _actions_per_node(self: Any, assignment: Any) -> Any:
    """aiokafka's fetch plan, with a longer wait for a fetch that holds every partition of
    its broker that faust reads (see wait_longer_when_whole)."""
    actions = _original_actions_per_node(self, assignment)
    paused = getattr(self, "_streamapp_faust_paused", None)
    if actions[0] and paused is not None:
        node_of = self._select_read_replica
        wait_longer_when_whole(actions[0], [(tp, node_of(tp)) for tp in assignment.tps], paused)
    return actions


def wait_longer_when_whole(
    fetch_requests: list[tuple[int, Any]],
    assigned: list[tuple[Any, int]],
    paused: Any,
) -> None:
    """FETCH_IDLE_WAIT_MS for each fetch (node id, FetchRequest) that holds every assigned
    partition (partition, its node id) of its node that faust does not keep paused. A short
    wait is for a fetch that leaves one out (records of it still buffered, its position
    being reset): that one cannot be fetched again before the held fetch returns (issue
    19). One that holds them all is answered as soon as any of them has a record."""
    for node_id, request in fetch_requests:
        held = {(topic, p[0]) for topic, partitions in request._topics for p in partitions}
        if all(
            (tp.topic, tp.partition) in held
            for tp, node in assigned
            if node == node_id and tp not in paused
        ):
            request._max_wait_ms = FETCH_IDLE_WAIT_MS


# -- 10. an assignment of an older topic layout ---------------------------------------------
_original_on_assignment = PartitionAssignor.on_assignment
# Rebalances asked for in a row (reset by an assignment that fits): a mismatch that a
# rebalance does not cure (metadata slow to show a new topic) must not loop.
MAX_LAYOUT_REBALANCES = 3
_layout_rebalances = {"in_a_row": 0}


def layout_problem(held: Mapping[str, set[int]], partitions_of: Any, limit: int = 5) -> str | None:
    """What is wrong with a group's assignment (`held`: topic -> the partitions some member
    is active for) against the topics as they are (`partitions_of(topic)`: their partition
    numbers, None when not known yet), or None when it covers each exactly."""
    problems = []
    for topic, assigned in sorted(held.items()):
        exist = partitions_of(topic)
        if exist is None:
            continue  # not in this client's metadata yet: nothing to compare
        if assigned != exist:
            gone, unheld = sorted(assigned - exist), sorted(exist - assigned)
            problems.append(
                f"{topic}: assigned {gone[:limit]} that do not exist"
                if gone
                else f"{topic}: nobody holds {unheld[:limit]}"
            )
    return "; ".join(problems[:limit]) or None


def _on_assignment(self: Any, assignment: Any) -> None:
    _original_on_assignment(self, assignment)
    consumer = _aiokafka_consumer(self.app.consumer)
    if consumer is None:
        return
    held: dict[str, set[int]] = {}
    for by_topic in [
        *self.external_topic_distribution.values(),
        *self.changelog_distribution.values(),
    ]:
        for topic, partitions in by_topic.items():
            held.setdefault(topic, set()).update(partitions)
    problem = layout_problem(held, consumer._client.cluster.partitions_for_topic)
    if problem is None:
        _layout_rebalances["in_a_row"] = 0
        return
    if _layout_rebalances["in_a_row"] >= MAX_LAYOUT_REBALANCES:
        log.warning("streamapp: the assignment still does not fit the topics (%s)", problem)
        return
    _layout_rebalances["in_a_row"] += 1
    log.info(
        "streamapp: the group's assignment does not fit the topics (%s), as a static member's "
        "assignment of an older topic layout does not: asking for a rebalance",
        problem,
    )
    # The stale assignment must not reach the leader as this member's previous one (faust's
    # sticky assignment starts from it): rejoin as a member that holds nothing.
    self._assignment = ClientAssignment(actives={}, standbys={})
    self._active_tps, self._standby_tps = set(), set()
    self.changelog_distribution, self.external_topic_distribution = {}, {}
    # In the consumer's own thread and loop (aiokafka calls on_assignment there).
    consumer._coordinator.request_rejoin()


# -- 9. a rebuild reads the changelogs in bulk -----------------------------------------------
_original_build_offsets = Recovery._build_offsets
# faust waits broker_request_timeout (90 s by default) for this step: what the bulk read
# has not done by then is left to faust's own recovery, from the offsets it reached.
BULK_RESTORE_BUDGET_S = 60.0
_bulk_restore: dict[str, Any] = {"settings": None}


def enable_bulk_restore(settings: Any) -> None:
    _bulk_restore["settings"] = settings


async def _build_offsets(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
    settings = _bulk_restore["settings"]
    if title == "active" and tps and settings is not None:
        await _restore_in_bulk(self, settings, tps, destination)
    await _original_build_offsets(self, consumer, tps, destination, title)


async def _restore_in_bulk(self: Any, settings: Any, tps: Any, destination: Any) -> None:
    """Before faust reads the active changelog partitions record by record, read them in
    bulk (kafka/changelog_restore.py) into their RocksDB databases, each fetch one write
    batch together with the offset it reaches (faust's persisted offset, under its own key:
    rocksdb.Store.offset_key), and move faust's start offsets past them (9.)."""
    starts: dict[TopicPartition, int] = {}
    stores: dict[TopicPartition, Any] = {}
    for tp in tps:
        table = self.tp_to_table.get(tp)
        store = getattr(table, "data", None)
        if store is None or not hasattr(store, "offset_key"):
            continue  # not a RocksDB table: faust's own way
        last = destination.get(tp)
        key = TopicPartition(tp.topic, tp.partition)
        starts[key] = last + 1 if last is not None and last >= 0 else 0
        stores[key] = store

    def apply(tp: TopicPartition, records: list[tuple[bytes, bytes | None]], last: int) -> None:
        _write_changelog_records(stores[tp], tp.partition, records, last)

    reached = await changelog_restore.restore(settings, starts, apply, BULK_RESTORE_BUDGET_S)
    for tp, offset in reached.items():
        destination[TP(tp.topic, tp.partition)] = offset


def _write_changelog_records(
    store: Any, partition: int, records: Iterable[tuple[bytes, bytes | None]], last: int
) -> None:
    """Changelog records (key, value or None for a delete) written to their partition's
    database as one write batch, with faust's persisted offset (under its own key:
    rocksdb.Store.offset_key) set to `last`: the data and the offset it reaches never part."""
    batch = WriteBatch(raw_mode=True)
    for key, value in records:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    batch.put(store.offset_key, str(last).encode())
    store._db_for_partition(partition).write(batch)


# -- 11. standby records applied a fetch at a time ------------------------------------------
_original_seek_offsets = Recovery._seek_offsets


async def _seek_offsets(self: Any, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
    """faust's recovery seeks the standby partitions to their persisted offsets before it
    resumes them: from then on (this generation) their fetches start where the database
    ends, and 11. may write them. A fetch that spans the seek is stale (`book.seeks`)."""
    book = ledger(consumer)
    book.seeks += 1
    await _original_seek_offsets(self, consumer, tps, offsets, title)
    book.seeks += 1
    if title == "standby":
        generation = self.app.consumer_generation_id
        for tp in tps:
            book.standby_from[tp] = (generation, book.seeks)


def _apply_standby_fetch(
    self: Any, book: FetchLedger, records: dict[Any, Any], active_tps: Any, seeks: int | None
) -> None:
    """Take the records of standby changelog partitions out of a fetch and write each
    partition's as one batch (11.). faust hands every standby record to its stream
    machinery one at a time (a Message, a wait on two futures, an Event, a queue, the
    recovery loop's own wait) before it buffers it: about 16 µs of a worker's CPU per
    record, a third of a worker's time with two workers (docs/performance.md). The record's
    value is written as it is either way; only the path to the write changes.

    Every record of a standby partition fetched while the flow runs is taken out of the
    fetch, never left to faust: one faust had queued, but not yet seen, when newer ones
    were written here would be dropped by its recovery loop as already seen, a record
    lost. Written are only those of a fetch that began after faust's
    recovery sought the partition to its persisted offset in this generation
    (`_seek_offsets`), that no seek or rebalance overlapped (`seeks` is None), and that
    faust would deliver (the partition is not paused): aiokafka fetches paused partitions
    too, from wherever their position was. The others are dropped, and the partition is
    read again from where its copy ends (faust's seek, still to come in this generation,
    or a rewind).

    What faust's own path took before the partition was a standby here (it buffers up to
    1,000 records) is applied first, and `standby_offsets` moves with what is written here.
    A failed write stops the worker (the fetch loop's error): the database keeps its last
    batch and its offset."""
    if not self.flow_active:
        return  # a rebalance: faust drops this fetch too, and seeks once it is over
    recovery = self.app.tables.recovery
    standby, active = recovery.standby_tps, recovery.active_tps
    offsets = recovery.standby_offsets
    generation = self.app.consumer_generation_id
    flushed = False
    for tp in [tp for tp in records if tp in standby and tp not in active]:
        table = recovery.tp_to_table.get(tp)
        store = getattr(table, "data", None)
        if store is None or not hasattr(store, "offset_key"):
            continue  # not a RocksDB table: faust's own way
        batch = records.pop(tp)
        seen = offsets.get(tp)
        positioned = book.standby_from.get(tp)
        sought_here = positioned is not None and positioned[0] == generation
        if (
            not sought_here
            or seeks is None
            or positioned[1] > seeks
            or (active_tps is not None and tp not in active_tps)
        ):
            if sought_here:  # else faust's seek is still to come and reads from there
                rewind(self, tp, 0 if seen is None or seen < 0 else seen + 1)
            continue
        fresh = [r for r in batch if seen is None or r.offset > seen]
        if not fresh:
            continue
        if not flushed:
            recovery.flush_buffers()  # anything faust took earlier goes first
            flushed = True
        last = fresh[-1].offset
        _write_changelog_records(store, tp.partition, ((r.key, r.value) for r in fresh), last)
        offsets[tp] = last
        self._read_offset[tp] = last


# -- 12. a record handed to its stream without four tasks ------------------------------------
_original_wait_first = Consumer.wait_first


async def _wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
    """faust's fetch loop hands each record to its stream with
    `wait_first(callback(message), suspend_flow.wait())`, and mode's wait_first makes a
    task of each of the two and of the service's stopped and crashed events, waits for the
    first, and cancels the other three: about a tenth of a worker's CPU per record (12.).
    The callback almost never waits (it decodes the record and puts it on the stream's
    queue unless that is full), so it is run at once here: when it finishes without
    waiting, that is the whole delivery; when it waits, the rest of it runs under faust's
    wait_first as before. While a rebalance suspends the flow or the service stops, faust's
    own way is taken from the start."""
    if (
        len(coros) == 2
        and timeout is None
        and asyncio.iscoroutine(coros[0])
        and not self.suspend_flow.is_set()
        and not self._stopped.is_set()
        and not self._crashed.is_set()
    ):
        delivery, interrupt = coros
        try:
            waiting_on = delivery.send(None)
        except StopIteration as done:
            if asyncio.iscoroutine(interrupt):
                interrupt.close()  # never awaited
            return WaitResults([delivery], [done.value], False)
        coros = (_continue(delivery, waiting_on), interrupt)
    return await _original_wait_first(self, *coros, timeout=timeout)


def apply_eager_delivery() -> None:
    """12. alone: also for the benchmark's bare faust agent, which must pay what the
    worker's faust pays per record (bench/floor_app.py)."""
    Consumer.wait_first = _wait_first  # type: ignore[method-assign]


class _Started:
    """Awaiting this goes on with a coroutine that was run up to its first wait (it
    yielded `waiting_on`), as `await coroutine` would have: what the event loop sends or
    throws in is passed to it, and its return value is the result."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Any, waiting_on: Any) -> None:
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self) -> Any:
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, or the future's own error
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _continue(coro: Any, waiting_on: Any) -> Any:
    return await _Started(coro, waiting_on)


# -- 15. fetching resumes as soon as a stream's buffer has drained ---------------------------
NOTHING_ACTIVE_WAIT_S = 1.0  # faust's sleep when every partition's buffer is full
_original_on_buffer_drop = Consumer.on_buffer_drop


def _on_buffer_drop(self: Any, tp: Any) -> None:
    resumed = tp in self._buffered_partitions
    _original_on_buffer_drop(self, tp)
    if resumed:
        ledger(self).resumed.set()
        wake_fetch_waiters(self)


def wake_fetch_waiters(consumer: Any) -> None:
    """End the wait of a fetch call pending on the consumer's thread (aiokafka 0.14's
    `Fetcher.fetched_records` waits for newly fetched records of the partitions it was asked
    for); it looks again at the partitions faust now asks for, which is the same set object."""
    thread = getattr(consumer, "_thread", None)
    fetcher = getattr(getattr(thread, "_consumer", None), "_fetcher", None)
    loop = getattr(thread, "thread_loop", None)
    if fetcher is None or loop is None or loop.is_closed():
        return

    def wake() -> None:
        for waiter in list(fetcher._fetch_waiters):
            if not waiter.done():
                waiter.set_result(None)

    with contextlib.suppress(RuntimeError):  # its loop closed meanwhile (stopping)
        loop.call_soon_threadsafe(wake)


async def _waited_for_resume(consumer: Any, book: FetchLedger) -> bool:
    """With every partition taken out of fetching, wait for the first one taken back
    (at most NOTHING_ACTIVE_WAIT_S, faust's sleep) instead of fetching: True if so."""
    if not consumer.flow_active or consumer.app.client_only:
        return False
    book.resumed.clear()
    if consumer._get_active_partitions():
        return False
    await consumer.wait(book.resumed, timeout=NOTHING_ACTIVE_WAIT_S)
    return True


async def _wait_next_records_resuming(self: Any, timeout: float) -> Any:
    """faust's `_wait_next_records` with 15. alone (the benchmark's bare agent)."""
    if await _waited_for_resume(self, ledger(self)):
        return {}, self._get_active_partitions()
    return await _original_wait_next_records(self, timeout)


def apply_prompt_resume() -> None:
    """15. alone: also for the benchmark's bare faust agent (bench/floor_app.py), which
    must not wait where the worker's faust does not. (`apply` then puts the worker's own
    `_wait_next_records`, which does the same, in its place.)"""
    Consumer.on_buffer_drop = _on_buffer_drop  # type: ignore[method-assign]
    if Consumer._wait_next_records is _original_wait_next_records:  # not over the worker's
        Consumer._wait_next_records = _wait_next_records_resuming  # type: ignore[method-assign]


# -- 16. records of a batch reader handed over without an event -----------------------------
class BatchReader(Protocol):
    """What a topic's batch reader (checkpoint.Checkpoint) offers the conductor."""

    def arrive(self, message: Any, tp: TP) -> Awaitable[None] | None:
        """Queue a fetched record of `tp`; an awaitable when the queue is full."""


_readers: dict[str, BatchReader] = {}  # topic name -> its reader
_original_compile_message_handler = Conductor._compile_message_handler


def read_in_batches(topic: str, reader: BatchReader | None) -> None:
    """Records of `topic` go to `reader` from now on (None: to faust's streams again)."""
    if reader is None:
        _readers.pop(topic, None)
    else:
        _readers[topic] = reader


def _compile_message_handler(self: Any) -> Any:
    """The conductor's callback for every fetched record (faust's fetch loop calls it once
    per record): a record of a topic with a reader goes to the reader; any other takes
    faust's way (a lock, the partition's callback, the streams)."""
    to_streams = _original_compile_message_handler(self)
    flow = self.app.flow_control
    readers = _readers
    tps: dict[Any, TP] = {}  # faust's TP of each partition (the record carries aiokafka's)

    async def on_message(message: Any) -> None:
        reader = readers.get(message.topic)
        if reader is None:
            return await to_streams(message)
        if not flow.is_active():  # a rebalance: wait as faust's delivery does
            await flow.acquire()
        tp = tps.get(message.tp)
        if tp is None:
            tp = tps[message.tp] = TP(message.topic, message.partition)
        waiting = reader.arrive(message, tp)  # faust's TP: its partition pause asserts it
        if waiting is not None:
            await waiting
        return None

    return on_message


# -- 17. no fixed second before the tables start ---------------------------------------------
async def _table_manager_on_start(self: Any) -> None:
    """faust 0.15.3's TableManager.on_start without its `sleep(1.0)` (17.)."""
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


# -- 18. a table's RocksDB options applied to an existing database too ----------------------
_original_rocksdb_open = RocksDBOptions.open


def _rocksdb_open(self: Any, path: Any, *, read_only: bool = False) -> Any:
    """faust 0.15.3's RocksDBOptions.open for the rocksdict driver, through open_db (18.)."""
    if not self.use_rocksdict or self.ttl is not None:
        return _original_rocksdb_open(self, path, read_only=read_only)
    options = self.as_options()
    memtable_filters(options)
    db = open_db(str(path), options, AccessType.read_write())
    db.set_read_options(ReadOptions())
    return db


# -- what the watchdog reads ------------------------------------------------------------
@dataclass(frozen=True)
class PartitionView:
    """One assigned partition as the consumer sees it, for the stall watchdog."""

    committed: int | None
    acked_head: int | None  # lowest processed offset above the commit, if any
    gap_at_committed: bool
    next_offset: int | None  # next offset a fetch should return (None: unknown)
    position: int | None  # aiokafka's fetch position
    end: int | None  # last stable offset (read committed): what can still be delivered
    fetching: str  # "yes", or why faust does not fetch it (paused, buffered, inactive)


def partition_view(consumer: Any, tp: Any) -> PartitionView:
    acked = consumer._acked.get(tp)
    committed = consumer._committed_offset.get(tp)
    gaps = consumer._gap.get(tp)
    position = end = None
    aio = _aiokafka_consumer(consumer)
    if aio is not None:
        try:
            state = aio._subscription.subscription.assignment.state_value(tp)
            position = state.position if state is not None and state.has_valid_position else None
            end = aio.last_stable_offset(tp)
        except Exception:  # not assigned in the thread yet, or no fetch so far
            position = end = None
    return PartitionView(
        committed=committed,
        acked_head=min(acked) if acked else None,
        gap_at_committed=bool(gaps and committed is not None and gaps.overlaps(committed)),
        next_offset=ledger(consumer).next_offset.get(tp),
        position=position,
        end=end,
        fetching=_fetching(consumer, tp),
    )


def _fetching(consumer: Any, tp: Any) -> str:
    undecodable = ledger(consumer).undecodable
    if tp in undecodable:
        return f"no: an undecodable record batch at offset {undecodable[tp]}"
    if tp in consumer._paused_partitions:
        return "paused"
    if tp in consumer._buffered_partitions:
        return "paused for a full stream buffer"
    active = consumer._active_partitions
    if active is not None and tp not in active:
        return "not among the active partitions"
    return "yes"


def _aiokafka_consumer(consumer: Any) -> Any:
    thread = getattr(consumer, "_thread", None)
    return getattr(thread, "_consumer", None) if thread is not None else None


def record_gap(consumer: Any, tp: Any, start: int, end: int) -> None:
    """The watchdog found offsets the fetch position passed without any record (markers
    at the end of a partition): committable."""
    _record_gap(consumer, ledger(consumer), tp, start, end)
    consumer._acked[tp]  # faust commits only partitions with an entry here (a defaultdict)
    book = ledger(consumer)
    if book.next_offset.get(tp) == start:
        book.next_offset[tp] = end


def refetch(consumer: Any, tp: Any) -> None:
    """Make faust fetch `tp` again if it stopped (a full stream buffer that drained long
    ago, a pause that outlived the recovery it was for); not a partition set aside for an
    undecodable batch."""
    if tp in ledger(consumer).undecodable:
        return
    if tp in consumer._buffered_partitions:
        consumer.on_buffer_drop(tp)
    if not consumer.app.in_recovery:
        if tp in consumer._paused_partitions:
            consumer.resume_partitions({tp})
        active = consumer._active_partitions
        if active is not None and tp not in active:
            active.add(tp)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset `tp`'s commit stands at in this worker (None: not known yet)."""
    return consumer._committed_offset.get(tp)


def gap_covers(consumer: Any, tp: Any, start: int, end: int) -> bool:
    """Whether every offset of start..end-1 is known to hold no deliverable record or lies
    below the committed offset: settled either way (the commit passes only processed
    records and gaps, 1., and forgets the gaps it passed, 6.)."""
    committed = consumer._committed_offset.get(tp)
    if committed is not None:
        start = max(start, committed)
    gaps = consumer._gap.get(tp)
    if not gaps:
        return start >= end
    at = start
    while at < end:
        covering = gaps[at]
        if not covering:
            return False
        at = max(interval.end for interval in covering)
    return True


def apply() -> None:
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer._commit_tps = _commit_tps  # type: ignore[method-assign]
    Consumer.ack = _ack  # type: ignore[method-assign]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    Consumer.seek = _seek  # type: ignore[method-assign]
    Consumer.on_partitions_revoked = _on_partitions_revoked  # type: ignore[method-assign]
    Consumer.on_partitions_assigned = _on_partitions_assigned  # type: ignore[method-assign]
    FetchResult.getall = _getall  # type: ignore[method-assign]
    Recovery._build_offsets = _build_offsets  # type: ignore[method-assign]
    Recovery._seek_offsets = _seek_offsets  # type: ignore[method-assign]
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    apply_eager_delivery()
    apply_prompt_resume()
    Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
    PartitionAssignor.on_assignment = _on_assignment  # type: ignore[method-assign]
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    Fetcher._get_actions_per_node = _actions_per_node  # type: ignore[method-assign]
    Conductor._compile_message_handler = _compile_message_handler  # type: ignore[method-assign]
    faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed = _thread_seek_to_committed  # type: ignore[method-assign]
    faust_aiokafka.AIOKafkaConsumerThread._fetch_records = _fetch_records  # type: ignore[method-assign]
    TableManager.on_start = _table_manager_on_start  # type: ignore[method-assign]
    RocksDBOptions.open = _rocksdb_open  # type: ignore[method-assign]


# -- Reads of faust's internals --------------------------------------------------------------
# Every other read of faust 0.15.3's private or internal state, each in one small function,
# so that a faust upgrade has one file to check (tests/unit/test_state_store.py fails when
# the store's names change).


def read_offset(consumer: Any, tp: Any) -> int | None:
    """The last offset faust has read of `tp`, None before the first (faust 0.15.3:
    Consumer._read_offset; there is no public accessor)."""
    return consumer._read_offset.get(tp)


def partition_db(store: Any, partition: int) -> Any:
    """A table's RocksDB database of `partition`, opened if it is not open yet (faust
    0.15.3: rocksdb.Store._db_for_partition)."""
    return store._db_for_partition(partition)


def open_partition_db(store: Any, partition: int) -> Any | None:
    """A table's RocksDB database of `partition` if this worker has it open (active or
    standby), else None (faust 0.15.3: rocksdb.Store._dbs)."""
    return store._dbs.get(partition)


def partition_path(store: Any, partition: int) -> Any:
    """Where a table's RocksDB database of `partition` is (faust 0.15.3:
    rocksdb.Store.partition_path, an internal method)."""
    return store.partition_path(partition)


def set_persisted_offset(store: Any, tp: Any, offset: int) -> None:
    """Record that the changelog partition `tp` holds everything up to `offset`, as faust's
    own changelog bookkeeping does (faust 0.15.3: rocksdb.Store.set_persisted_offset, an
    internal method); recovery resumes after it."""
    store.set_persisted_offset(tp, offset)


def set_web_server_limits(web_app: Any, limits: Mapping[str, int]) -> None:
    """The request-line and header limits of faust's aiohttp server. faust 0.15.3 builds
    its aiohttp Application without handler_args and offers no setting for them; aiohttp
    (3.x) reads `Application._handler_args` when its server starts."""
    web_app._handler_args = {**(web_app._handler_args or {}), **limits}
