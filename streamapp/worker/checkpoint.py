"""The commit protocol of one source stream: a checkpoint.

A source record's offset becomes committable only when
  1. its batch was processed into local state (ingest.py),
  2. every record that batch produced -- changelog, re-keyed interactions, affinity
     updates, dead letters -- was confirmed by the broker (outbox.Outbox.deliver), and
  3. every earlier batch of the same stream was confirmed too (acks go out in order).
Only then are its events acked to faust, whose commit (with the corrections in
faust_fixes.py) never passes an offset that was not acked or known to hold no record.

Batches are formed from what has already been read, as a group commit: with nothing on
its way to the broker a batch is taken at once (a lone interaction is processed
immediately); while the last batch is being confirmed, what arrives joins the next batch,
which closes when that confirmation comes or a whole batch is waiting. While records past
those read are known to exist (a backlog: the partition's end from the last fetch is ahead),
a batch stays open until the stream reached that end, a whole batch is waiting or
GATHER_MAX_S passed; up to MAX_IN_FLIGHT batches wait for the broker while the next one is
processed.

Records come straight from faust's fetch loop (faust_fixes 16.), not through faust's
stream: the checkpoint queues them on a flow-controlled queue and takes them as faust's
stream would (records of an older generation, or taken while the flow is stopped for a
rebalance, are dropped untracked and read again after the seek), at a fraction of the
stream's cost per record. The agent's stream is still iterated, so faust subscribes to the
topic; anything it yields joins the same queue.

Records faust read but never handed to the stream (seen around a start-up seek) are
noticed here as a jump in a partition's offsets and read again, and the records after
them wait for the re-read: each partition is processed in offset order, which replay
detection relies on (pair_state.py). The stall watchdog (`StallWatch`) catches whatever
else keeps a partition's commit from reaching its end.

A batch body must never raise: faust would ack nothing, but the handler's partial writes
stay. outbox.run_guarded finishes a batch or stops the process before any ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streamapp import metrics
from streamapp.core.parsing import Record
from streamapp.kafka.outbox import Outbox, run_guarded
from streamapp.worker import faust_fixes

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Record]], Awaitable[Outbox]]
MAX_IN_FLIGHT = 4  # batches processed and waiting for the broker's confirmation
GATHER_MAX_S = 0.05  # longest a batch stays open for a backlog (_gather_backlog)
REREAD_EVERY_S = 5.0  # a hole's re-read is asked again while records past it arrive


def _tp_of(record: Record) -> tuple[str, int]:
    return (record.topic, record.partition)  # equal to faust's TP (a named tuple)


def record_of(message: Any) -> Record:
    ts = message.timestamp
    return Record(  # positional: one is made per record
        message.topic,
        message.partition,
        message.offset,
        round(ts * 1000) * 1000 if ts is not None and ts >= 0 else None,  # timestamp_us
        message.key,
        message.value,
    )


@dataclass
class Checkpoint:
    """Reads one source topic into batches, hands them to `handler`, and acks each
    batch's records once its output is confirmed and every earlier batch was acked."""

    app: Any
    stream: Any
    handler: Handler
    what: str
    batch_max: int
    ready: Callable[[], Awaitable[None]] | None = None  # awaited before the first batch
    queue: asyncio.Queue[Any] = field(init=False)
    filled: asyncio.Event = field(init=False)
    drained: asyncio.Event = field(init=False)
    next_due: dict[Any, int] = field(default_factory=dict)  # per partition, next offset
    rereads: dict[tuple[Any, int], float] = field(default_factory=dict)  # -> when asked
    ends: dict[Any, int | None] = field(default_factory=dict)  # per partition, as last fetched
    behind: set[Any] = field(default_factory=set)  # partitions with records not read yet
    in_flight: deque[asyncio.Future[None]] = field(default_factory=deque)
    sent_at: dict[asyncio.Future[None], float] = field(default_factory=dict)
    generation: int | None = None
    batches: int = 0
    events: int = 0
    skips_reread: int = 0  # holes found
    skipped_records: int = 0  # records set aside to wait for a hole's re-read

    def __post_init__(self) -> None:
        # As a stream's own queue: faust pauses a partition at 80 % of it (back-pressure)
        # and empties it when the flow resumes after a rebalance (a seek follows).
        size = max(self.app.conf.stream_buffer_maxsize, 2 * self.batch_max)
        self.queue = self.app.FlowControlQueue(maxsize=size, clear_on_resume=True)
        self.filled = asyncio.Event()  # a whole batch is waiting
        self.drained = asyncio.Event()  # no partition is known to have records not read yet
        self._pressure: dict[Any, tuple[Callable[[], None], Callable[[], None]]] = {}

    def waiting(self) -> bool:
        """Records are read and waiting for their batch."""
        return not self.queue.empty()

    def describe(self) -> str:
        """What this checkpoint holds, for a stall report."""
        oldest = min(self.sent_at.values(), default=None)
        age = f", the oldest for {time.monotonic() - oldest:.1f} s" if oldest else ""
        return (
            f"{self.what}: {self.queue.qsize()} records waiting, "
            f"{len(self.in_flight)} batches waiting for the broker{age}"
        )

    async def run(self) -> None:
        self.stream.enable_acks = False  # acked by hand, after confirmation
        # Iterating the stream subscribes faust to the topic; the records themselves come
        # through `arrive` (faust_fixes 16.), or from the stream when no reader is set.
        feeder = asyncio.ensure_future(self._feed())
        try:
            if self.ready is not None:
                await self.ready()
            while True:
                batch = await self._next_batch()
                await self._process(batch)
                if feeder.done():
                    feeder.result()  # the stream ended or failed: let faust see it
                    return
        finally:
            feeder.cancel()
            if self.in_flight:  # a stopping worker acks what was delivered
                await asyncio.shield(asyncio.gather(*self.in_flight, return_exceptions=True))

    async def _next_batch(self) -> list[tuple[Any, float]]:
        queue, take = self.queue, self._take
        batch: list[tuple[Any, float]] = []
        while not batch:
            item = await queue.get()
            if take(item[0]):
                batch.append(item)
        if self.in_flight and queue.qsize() + 1 < self.batch_max:
            await self._gather_while_confirming()
        if self.behind and queue.qsize() + 1 < self.batch_max:
            await self._gather_backlog()
        while len(batch) < self.batch_max and not queue.empty():
            item = queue.get_nowait()
            if take(item[0]):
                batch.append(item)
        return batch

    def arrive(self, message: Any, tp: Any) -> Awaitable[None] | None:
        """A fetched record of `tp` (faust's TP) of this checkpoint's topic (faust_fixes
        16.): queued as faust queues an event for its stream; an awaitable when the queue
        is full."""
        item = (message, time.time())
        if self.queue.full():
            return self._arrive_later(item, tp)
        high, drop = self._pressure_of(tp)
        self.queue.put_nowait_enhanced(item, on_pressure_high=high, on_pressure_drop=drop)
        self._arrived(message, tp)
        return None

    async def _arrive_later(self, item: tuple[Any, float], tp: Any) -> None:
        """Wait for room, as faust's delivery waits for a stream's queue. A rebalance
        empties the queue (faust's flow control) and with it cancels this wait: the record
        is dropped, untracked, and the seek that ends the rebalance reads it again. Raised
        out of faust's fetch loop, that cancellation crashed the worker."""
        try:
            await self.queue.put(item)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the fetch loop itself is being stopped
            return
        self._arrived(item[0], tp)

    def close(self) -> None:
        """The checkpoint stops reading: what it queued is dropped (untracked: read again
        from the commit), a fetch loop waiting for room goes on, and the partitions its
        queue had paused are fetched again."""
        self.queue.clear()
        for tp in self._pressure:
            self.app.consumer.on_buffer_drop(tp)

    def _generation(self) -> int:
        """The consumer's generation; what this checkpoint knew of positions and ends is
        forgotten when it changes."""
        generation: int = self.app.consumer_generation_id
        if generation != self.generation:
            self.next_due.clear()  # a rebalance moved the positions
            self.ends.clear()
            self.behind.clear()  # what was fetched before may never come: no waiting
            self.drained.set()
            self.generation = generation
        return generation

    def _arrived(self, message: Any, tp: Any) -> None:
        self._generation()
        if self.queue.qsize() + 1 >= self.batch_max:
            self.filled.set()
        self._note_backlog(tp, message.offset)

    def _pressure_of(self, tp: Any) -> tuple[Callable[[], None], Callable[[], None]]:
        """The partition's pause and take-back, one pair of callables per partition (the
        queue remembers them by identity), as faust's conductor makes them."""
        pair = self._pressure.get(tp)
        if pair is None:
            consumer = self.app.consumer

            def high() -> None:
                self.app.sensors.on_topic_buffer_full(tp)
                consumer.on_buffer_full(tp)

            def drop() -> None:
                consumer.on_buffer_drop(tp)

            pair = self._pressure[tp] = (high, drop)
        return pair

    async def _gather_while_confirming(self) -> None:
        """A group commit: while the broker confirms the last batch, what arrives joins the
        next one, which closes when that confirmation comes or a whole batch is waiting.
        Nothing in flight (a trickle): no wait at all. A backlog: whole batches, no wait.
        Small batches cost more per record than the broker's round trip costs in time."""
        self.filled.clear()
        filled = asyncio.ensure_future(self.filled.wait())
        try:
            await asyncio.wait([self.in_flight[-1], filled], return_when=FIRST_COMPLETED)
        finally:
            filled.cancel()

    def _highwater(self, tp: Any) -> int | None:
        """The partition's end as the consumer's last fetch response gave it (faust's public
        Consumer.highwater; None: not fetched yet)."""
        try:
            return self.app.consumer.highwater(tp)
        except Exception:  # not assigned (any more): nothing to wait for
            return None

    def _note_backlog(self, tp: Any, offset: int) -> None:
        """Whether the broker holds records of `tp` past `offset` (as of the last fetch);
        `drained` is set once no partition of this stream is known to have any. One look at
        the consumer per partition while it is behind the end it last knew of, not one per
        record."""
        end = self.ends.get(tp)
        if end is None or offset + 1 >= end:
            end = self.ends[tp] = self._highwater(tp)
        if end is not None and offset + 1 < end:
            self.behind.add(tp)
        else:
            self.behind.discard(tp)
            if not self.behind:
                self.drained.set()

    async def _gather_backlog(self) -> None:
        """A backlog comes in whole batches: while records past those read are known to
        exist, the batch stays open until the stream has reached the ends the last fetches
        reported, a whole batch is waiting, or GATHER_MAX_S has passed. Every batch has a
        fixed cost (a RocksDB write and a send per topic partition, a confirmation, acks in
        order) that a batch of a few records pays per record: batches taken as soon as the
        last one was confirmed held 9 to 11 records while a backlog of 100,000 was read, and
        the worker spent 262 µs of CPU per record instead of 140. Waiting only for records
        faust had already fetched, with a 20 ms bound, gave batches of 200-400 and, beside
        other load, 13 % more CPU per record, a third more of the broker's CPU and two
        workers at 1.36 x one instead of 1.52 x (docs/performance.md)."""
        self.filled.clear()
        self.drained.clear()
        waits = [asyncio.ensure_future(e.wait()) for e in (self.filled, self.drained)]
        try:
            await asyncio.wait(waits, timeout=GATHER_MAX_S, return_when=FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _process(self, batch: list[tuple[Any, float]]) -> None:
        taken = time.time()
        messages = [message for message, _ in batch]
        # faust's "stream is not processing" check reads when each partition last had a
        # record taken (the stream's sensor set it; the LeanMonitor keeps it).
        inbound, now = self.app.monitor.stream_inbound_time, time.monotonic()
        for message in messages:
            inbound[message.tp] = now
        records = [record_of(message) for message in messages]
        box = await run_guarded(self.handler(records), self.what)
        written = time.time()
        self._observe_steps(records[0], batch[0][1], taken, written)
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait([self.in_flight[0]])
        previous = self.in_flight[-1] if self.in_flight else None
        done = asyncio.ensure_future(
            run_guarded(self._confirm(box, messages, previous, written), self.what)
        )
        self.in_flight.append(done)
        self.sent_at[done] = time.monotonic()
        done.add_done_callback(self._finished)
        self.batches += 1
        self.events += len(batch)
        metrics.batch_events.labels(self.what).observe(len(batch))

    def _observe_steps(self, first: Record, arrived: float, taken: float, written: float) -> None:
        """The way of a batch's first record through the worker (freshness, issue 19)."""
        step = metrics.batch_step_seconds.labels
        fetched = faust_fixes.ledger(self.app.consumer).fetched_at(_tp_of(first), first.offset)
        if first.timestamp_us is not None and fetched is not None:
            step("record_to_fetched").observe(max(0.0, fetched - first.timestamp_us / 1e6))
        if fetched is not None:
            step("fetched_to_stream").observe(max(0.0, arrived - fetched))
        step("stream_to_taken").observe(taken - arrived)
        step("taken_to_written").observe(written - taken)

    def _finished(self, done: asyncio.Future[None]) -> None:
        self.sent_at.pop(done, None)
        with contextlib.suppress(ValueError):
            self.in_flight.remove(done)

    async def _confirm(
        self, box: Outbox, batch: list[Any], previous: asyncio.Future[None] | None, written: float
    ) -> None:
        await box.deliver()  # overlaps with earlier batches' deliveries
        confirmed = time.time()
        step = metrics.batch_step_seconds.labels
        step("written_to_confirmed").observe(confirmed - written)
        first = batch[0].timestamp if batch else None
        if first is not None and first > 0:  # end to end: the record's time to its output
            step("record_to_confirmed").observe(max(0.0, confirmed - first))
        if previous is not None:
            await asyncio.shield(previous)  # acks in order
        ack = self.app.consumer.ack
        for message in batch:
            ack(message)  # its offset becomes committable

    async def _feed(self) -> None:
        async for event in self.stream.events():
            message = event.message  # its tp is aiokafka's: faust's partition pause asserts
            waiting = self.arrive(message, TP(message.topic, message.partition))
            if waiting is not None:
                await waiting

    def _take(self, message: Any) -> bool:
        """Whether a queued record joins the batch. First as faust's stream decides when it
        takes an event: a record fetched before the last rebalance, or taken while the flow
        is stopped for one, is dropped untracked (the seek after the rebalance reads it
        again). Then the order: a record after offsets faust never handed over waits for
        their re-read."""
        app = self.app
        generation = self._generation()
        if message.generation_id != generation or not app.flow_control.is_active():
            return False
        consumer = app.consumer
        tp, offset = message.tp, message.offset
        due = self.next_due.get(tp)
        if due is None:
            # The first record of a partition since a (re)assignment: faust sought to the
            # committed offset, so anything between it and this record was skipped unless it
            # holds no record (a fetch faust dropped before any of the partition was taken).
            due = faust_fixes.committed_offset(consumer, tp)
        if (
            due is not None
            and offset > due
            and not faust_fixes.gap_covers(consumer, tp, due, offset)
        ):
            # faust read offsets due..offset-1 but never handed them over. They are read
            # again, and this record and the later ones of the partition wait for them:
            # counting relies on each source partition arriving in offset order (a record
            # applied after a later one of its partition is taken for a replay,
            # pair_state.py), so nothing is processed out of order.
            self.next_due[tp] = due
            self._read_again(tp, due, offset)
            return False
        if due is None or offset >= due:
            self.next_due[tp] = offset + 1
        if not message.tracked:  # pending until acked: faust's rebalance waits for it
            message.tracked = True
            consumer.track_message(message)
        return True

    def _read_again(self, tp: Any, due: int, offset: int) -> None:
        """Ask for `tp` from `due` again: once when the hole is found, then at most every
        REREAD_EVERY_S while records past it keep arriving (a rewind is dropped by a seek
        to the committed offsets, which re-reads from at or before `due` anyway)."""
        self.skipped_records += 1
        now = time.monotonic()
        asked = self.rereads.get((tp, due))
        if asked is not None and now - asked < REREAD_EVERY_S:
            return
        self.rereads[(tp, due)] = now
        if asked is None:
            self.skips_reread += 1
            metrics.rereads.labels("skipped").inc()
            log.warning(
                "%s[%d]: offsets %d-%d were skipped by faust; reading them again (the "
                "records after them wait, in order)",
                tp.topic,
                tp.partition,
                due,
                offset - 1,
            )
        faust_fixes.rewind(self.app.consumer, tp, due, hold=True)


@dataclass
class _Seen:
    key: tuple[Any, ...]
    since: float
    reported: bool = False


@dataclass
class StallWatch:
    """Per assigned source partition: committed offset, processed offsets, fetch position,
    end and log start. A partition that stays behind without progress is logged once with
    those numbers, counted, and read again from its committed offset, whatever the cause;
    offsets below the log start that the commit has not passed are committed past."""

    stall_s: float
    checks: int = 0
    seen: dict[Any, _Seen] = field(default_factory=dict)
    holes: dict[Any, int] = field(default_factory=dict)
    tails: dict[Any, tuple[int, int]] = field(default_factory=dict)
    deleted: dict[Any, int] = field(default_factory=dict)  # log start last committed past

    def _deleted_unread(self, consumer: Any, tp: Any, committed: int, start: int) -> None:
        """The topic's retention deleted offsets committed..start-1 before they were read (a
        group offline for longer than the retention): no fetch can return them, so they are
        committable. Without it the commit waited at `committed` for good, and the hole
        rule read the partition again from there every few seconds (aiokafka answers a
        fetch below the log start by resetting to it)."""
        faust_fixes.record_gap(consumer, tp, committed, start)
        if self.deleted.get(tp) != start:
            self.deleted[tp] = start
            metrics.deleted_unread.labels(tp.topic).inc(start - committed)
            log.warning(
                "%s[%d]: offsets %d-%d were deleted by the topic's retention before they were "
                "read; they are not counted, and the commit moves past them",
                tp.topic,
                tp.partition,
                committed,
                start - 1,
            )

    def check(
        self,
        consumer: Any,
        partitions: Sequence[Any],
        ends: Mapping[Any, int] | None = None,
        now: float | None = None,
        context: Callable[[], str] | None = None,
        starts: Mapping[Any, int] | None = None,
    ) -> None:
        """`ends`: each partition's end from the broker (a partition never fetched has no
        end in the consumer's own bookkeeping); `starts`: each partition's log start."""
        now = time.monotonic() if now is None else now
        holes: dict[Any, int] = {}
        tails: dict[Any, tuple[int, int]] = {}
        for tp in partitions:
            view = faust_fixes.partition_view(consumer, tp)
            committed = view.committed
            if committed is None:
                continue
            start = (starts or {}).get(tp)
            if start is not None and committed < start:
                self._deleted_unread(consumer, tp, committed, start)
                view = faust_fixes.partition_view(consumer, tp)  # a gap at the commit now
            end = (ends or {}).get(tp, view.end)
            behind = (end - committed) if end is not None and end >= 0 else 0
            metrics.commit_lag.labels(tp.topic, str(tp.partition)).set(max(behind, 0))
            # A record at the committed offset that was never processed, though later ones
            # were: read again from there (seen twice in a row, so a batch still on its way
            # to the broker is not mistaken for a hole).
            if (
                view.acked_head is not None
                and view.acked_head > committed
                and not view.gap_at_committed
            ):
                holes[tp] = committed
                if self.holes.get(tp) == committed:
                    log.warning(
                        "%s[%d]: offset %d was never processed though later ones were; "
                        "reading again from there",
                        tp.topic,
                        tp.partition,
                        committed,
                    )
                    metrics.rereads.labels("hole").inc()
                    faust_fixes.rewind(consumer, tp, committed)
            # Everything fetched is processed and committed, but the fetch position is past
            # the commit: the offsets between hold no record (transaction markers at the
            # end of a partition). Seen the same twice in a row: commit past them.
            elif (
                view.acked_head is None
                and view.next_offset == committed
                and view.position is not None
                and view.position > committed
            ):
                tails[tp] = (committed, view.position)
                if self.tails.get(tp) == (committed, view.position):
                    faust_fixes.record_gap(consumer, tp, committed, view.position)
            key = (committed, view.acked_head, view.next_offset, view.position)
            seen = self.seen.get(tp)
            if seen is None or seen.key != key or behind <= 0:
                self.seen[tp] = _Seen(key, now)
                continue
            if now - seen.since >= self.stall_s and not seen.reported:
                seen.reported = True
                metrics.stalls.labels(tp.topic).inc()
                log.warning(
                    "%s[%d]: no progress for %.0f s with %d records behind (committed %d, "
                    "lowest processed above it %s, next fetch %s, fetch position %s, end %s, "
                    "fetching: %s; %s); reading again from %d",
                    tp.topic,
                    tp.partition,
                    now - seen.since,
                    behind,
                    committed,
                    view.acked_head,
                    view.next_offset,
                    view.position,
                    end,
                    view.fetching,
                    context() if context is not None else "",
                    committed,
                )
                faust_fixes.refetch(consumer, tp)
                faust_fixes.rewind(consumer, tp, committed)
        self.holes, self.tails = holes, tails
        for tp in list(self.seen):
            if tp not in partitions:
                del self.seen[tp]
                metrics.commit_lag.remove(tp.topic, str(tp.partition))
