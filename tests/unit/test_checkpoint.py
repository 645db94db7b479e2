"""The checkpoint (the commit protocol of a source stream) and the stall watchdog, without
a broker: batches form from what is waiting, acks follow confirmation in order, skipped
offsets and stuck partitions are read again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streamapp.worker import checkpoint as checkpoint_module
from streamapp.worker import faust_fixes
from streamapp.worker.checkpoint import Checkpoint, StallWatch
from streamapp.worker.faust_fixes import PartitionView

TP = faust.types.TP("interactions", 3)


class Event:
    """A fetched record (`message`, as faust's consumer makes it) and where its ack goes."""

    def __init__(self, offset: int, acks: list[int], generation: int = 1) -> None:
        self.message = SimpleNamespace(
            tp=TopicPartition(TP.topic, TP.partition),
            topic=TP.topic,
            partition=TP.partition,
            offset=offset,
            timestamp=1.0,
            key=None,
            value=b"{}",
            generation_id=generation,
            tracked=False,
            acks=acks,
        )  # fmt: skip  (tp: aiokafka's, as on faust's messages)


class Feed:
    """faust's fetch loop as the checkpoint sees it: each record handed to `arrive`
    (faust_fixes 16.), in order."""

    def __init__(self) -> None:
        self.checkpoint: Checkpoint | None = None
        self.waiting: list[asyncio.Future[None]] = []  # deliveries blocked on a full queue

    def put_nowait(self, event: Event) -> None:
        assert self.checkpoint is not None
        waiting = self.checkpoint.arrive(event.message, TP)
        if waiting is not None:
            self.waiting.append(asyncio.ensure_future(waiting))


class Stream:
    """The agent's faust stream: iterated (that subscribes the topic), yields nothing while
    the records come through `arrive`; `yielded` holds what it hands out itself."""

    def __init__(self) -> None:
        self.queue = Feed()
        self.yielded: asyncio.Queue[Any] = asyncio.Queue()
        self.enable_acks = True

    async def events(self) -> Any:
        while True:
            event = await self.yielded.get()
            if event is None:
                return
            yield event


class Box:
    """An outbox whose delivery the test confirms by hand."""

    def __init__(self) -> None:
        self.confirmed = asyncio.get_running_loop().create_future()

    async def deliver(self) -> None:
        await self.confirmed


class Recorder:
    """A batch handler that records the offsets of each batch and returns a Box per batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.boxes: list[Box] = []
        self.acks: list[int] = []

    async def __call__(self, records: Any) -> Box:
        self.batches.append([r.offset for r in records])
        self.boxes.append(Box())
        return self.boxes[-1]


def fake_app(committed: int | None = None, end: int | None = None) -> Any:
    """`end`: the partition's end as the consumer's last fetch gave it (None: unknown)."""
    consumer = SimpleNamespace(_gap={}, _committed_offset={TP: committed}, unacked=[])
    consumer.highwater = lambda tp: end
    consumer.ack = lambda message: message.acks.append(message.offset)
    consumer.track_message = consumer.unacked.append
    consumer.paused = []
    consumer.on_buffer_full = consumer.paused.append
    consumer.on_buffer_drop = consumer.paused.remove
    flow = FlowControlEvent(initially_suspended=False)
    return SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=1,
        conf=SimpleNamespace(stream_buffer_maxsize=4096),
        flow_control=flow,
        FlowControlQueue=lambda maxsize, clear_on_resume: ThrowableQueue(
            maxsize=maxsize, flow_control=flow, clear_on_resume=clear_on_resume
        ),
        sensors=SimpleNamespace(on_topic_buffer_full=lambda tp: None),
        monitor=SimpleNamespace(stream_inbound_time={}),
    )


async def started(
    handler: Any,
    stream: Stream,
    batch_max: int = 100,
    committed: int | None = None,
    end: int | None = None,
) -> tuple[Checkpoint, asyncio.Task[None]]:
    app = fake_app(committed, end)
    cp = Checkpoint(app, stream, handler, "interactions", batch_max=batch_max)
    stream.queue.checkpoint = cp
    return cp, asyncio.ensure_future(cp.run())


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def stopped(task: asyncio.Task[None], boxes: list[Box] = ()) -> None:
    """Cancel a checkpoint's run; it finishes the batches on their way first."""
    for box in boxes:
        if not box.confirmed.done():
            box.confirmed.set_result(None)
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.done()


async def test_a_lone_record_is_processed_at_once_and_acked_after_confirmation() -> None:
    handler = Recorder()
    batches, boxes, acks = handler.batches, handler.boxes, handler.acks

    stream = Stream()
    _, task = await started(handler, stream)
    stream.queue.put_nowait(Event(0, acks))
    await settle()
    assert batches == [[0]]  # no waiting for the batch to fill
    assert acks == []  # processed, not confirmed: not committable
    boxes[0].confirmed.set_result(None)
    await settle()
    assert acks == [0] and not stream.enable_acks
    await stopped(task)


async def test_while_a_batch_is_confirmed_the_next_one_gathers_then_acks_follow_in_order() -> None:
    handler = Recorder()
    batches, boxes, acks = handler.batches, handler.boxes, handler.acks

    stream = Stream()
    _, task = await started(handler, stream)
    stream.queue.put_nowait(Event(0, acks))
    await settle()
    for offset in (1, 2, 3):  # arrive while batch 0 is on its way to the broker
        stream.queue.put_nowait(Event(offset, acks))
        await settle()
    assert batches == [[0]]  # they wait for batch 0's confirmation, together
    boxes[0].confirmed.set_result(None)
    await settle()
    assert batches == [[0], [1, 2, 3]] and acks == [0]
    boxes[1].confirmed.set_result(None)
    await settle()
    assert acks == [0, 1, 2, 3]
    await stopped(task)


async def test_whole_batches_go_at_once_and_acks_wait_for_earlier_ones() -> None:
    handler = Recorder()
    boxes, acks = handler.boxes, handler.acks

    stream = Stream()
    _, task = await started(handler, stream, batch_max=2)
    for offset in range(6):
        stream.queue.put_nowait(Event(offset, acks))
    await settle()
    assert len(boxes) == 3  # a backlog: three whole batches, none confirmed yet
    boxes[2].confirmed.set_result(None)
    boxes[1].confirmed.set_result(None)
    await settle()
    assert acks == []  # batch 0 is still on its way: nothing after it is acked
    boxes[0].confirmed.set_result(None)
    await settle()
    assert acks == [0, 1, 2, 3, 4, 5]
    await stopped(task)


async def test_a_backlog_is_gathered_into_one_batch_up_to_the_end_the_fetch_reported() -> None:
    """Records arrive one by one from faust's stream while the partition's end (10) is
    known to be further on: they wait for each other, and go as one batch once the stream
    reached the end, instead of a batch of one or two each (every batch has a fixed cost)."""
    handler = Recorder()
    stream = Stream()
    _, task = await started(handler, stream, end=10)
    for offset in range(9):
        stream.queue.put_nowait(Event(offset, handler.acks))
        await settle()
    assert handler.batches == []  # offset 9 exists: the batch stays open
    stream.queue.put_nowait(Event(9, handler.acks))
    await settle()
    assert handler.batches == [list(range(10))]
    await stopped(task, handler.boxes)


async def test_a_record_at_the_end_of_its_partition_goes_at_once() -> None:
    """Nothing after it on the broker (as of the last fetch): no waiting."""
    handler = Recorder()
    stream = Stream()
    _, task = await started(handler, stream, end=1)
    stream.queue.put_nowait(Event(0, handler.acks))
    await settle()
    assert handler.batches == [[0]]
    await stopped(task, handler.boxes)


async def test_a_backlog_batch_closes_when_whole_or_after_the_longest_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checkpoint_module, "GATHER_MAX_S", 0.05)
    handler = Recorder()
    stream = Stream()
    _, task = await started(handler, stream, batch_max=4, end=1_000)
    for offset in range(6):
        stream.queue.put_nowait(Event(offset, handler.acks))
        await settle()
    assert handler.batches == [[0, 1, 2, 3]]  # whole: it goes at once
    handler.boxes[0].confirmed.set_result(None)
    await settle()
    assert handler.batches == [[0, 1, 2, 3]]  # 4, 5: the rest of the backlog may come
    await asyncio.sleep(0.2)  # ... but never arrives: the batch goes after GATHER_MAX_S
    assert handler.batches == [[0, 1, 2, 3], [4, 5]]
    await stopped(task, handler.boxes)


async def test_at_most_a_few_batches_wait_for_the_broker() -> None:
    handler = Recorder()
    boxes = handler.boxes

    stream = Stream()
    cp, task = await started(handler, stream, batch_max=1)
    for offset in range(10):
        stream.queue.put_nowait(Event(offset, []))
        await settle()
    assert len(cp.in_flight) == checkpoint_module.MAX_IN_FLIGHT
    await stopped(task, boxes)


async def test_offsets_faust_skipped_are_read_again_and_nothing_is_processed_out_of_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16's last loss: records re-read after later ones of their partition were
    counted were taken for replays (pair_state keeps the highest source offset applied).
    The records after a hole now wait for it."""
    rewinds: list[tuple[Any, int]] = []
    monkeypatch.setattr(
        faust_fixes, "rewind", lambda c, tp, offset, hold=False: rewinds.append((tp, offset))
    )
    monkeypatch.setattr(
        faust_fixes, "gap_covers", lambda c, tp, start, end: (start, end) == (18, 19)
    )
    recorder = Recorder()
    stream = Stream()
    cp, task = await started(recorder, stream)
    # 12-14 skipped by faust; 15 and 16 arrive, then the re-read from 12; 18 holds no record
    for offset in (10, 11, 15, 16, 12, 13, 14, 15, 16, 17, 19):
        stream.queue.put_nowait(Event(offset, recorder.acks))
        await settle()
        for box in recorder.boxes:
            if not box.confirmed.done():
                box.confirmed.set_result(None)
    await settle()
    assert rewinds == [(TP, 12)]  # asked once: 16 came within REREAD_EVERY_S
    assert [o for batch in recorder.batches for o in batch] == [10, 11, 12, 13, 14, 15, 16, 17, 19]
    assert cp.skips_reread == 1 and cp.skipped_records == 2
    await stopped(task, recorder.boxes)


async def confirmed_at_once(records: Any) -> Box:
    box = Box()
    box.confirmed.set_result(None)
    return box


@pytest.mark.parametrize(
    ("first", "gap", "want"),
    [(15, None, [(TP, 10)]), (10, None, []), (15, (10, 15), []), (8, None, [])],
    ids=["skipped-before-the-first", "from-the-commit", "a-marker-first", "older-first"],
)
async def test_the_first_record_of_a_partition_is_compared_with_its_commit(
    monkeypatch: pytest.MonkeyPatch, first: int, gap: tuple[int, int] | None, want: list[Any]
) -> None:
    """Records faust dropped before the stream saw any of the partition (a fetch from
    before the start-up seek) are read again at once, not after the stall timeout."""
    rewinds: list[tuple[Any, int]] = []
    monkeypatch.setattr(
        faust_fixes, "rewind", lambda c, tp, offset, hold=False: rewinds.append((tp, offset))
    )
    monkeypatch.setattr(faust_fixes, "gap_covers", lambda c, tp, start, end: gap == (start, end))
    stream = Stream()
    _, task = await started(confirmed_at_once, stream, committed=10)
    stream.queue.put_nowait(Event(first, []))
    stream.queue.put_nowait(Event(first + 1, []))
    await settle()
    assert rewinds == want
    await stopped(task)


# -- the stall watchdog ------------------------------------------------------------------
def view(**kw: Any) -> PartitionView:
    base = dict(
        committed=100, acked_head=None, gap_at_committed=False, next_offset=100,
        position=100, end=100, fetching="yes",
    )  # fmt: skip
    base.update(kw)
    return PartitionView(**base)


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    done: dict[str, list[Any]] = {"rewind": [], "gap": [], "refetch": []}
    monkeypatch.setattr(faust_fixes, "rewind", lambda c, tp, o: done["rewind"].append(o))
    monkeypatch.setattr(faust_fixes, "record_gap", lambda c, tp, a, b: done["gap"].append((a, b)))
    monkeypatch.setattr(faust_fixes, "refetch", lambda c, tp: done["refetch"].append(tp))
    return done


def watch_with(monkeypatch: pytest.MonkeyPatch, views: list[PartitionView]) -> Any:
    it = iter(views)
    monkeypatch.setattr(faust_fixes, "partition_view", lambda consumer, tp: next(it))
    return StallWatch(stall_s=20.0)


def test_a_hole_at_the_committed_offset_is_read_again_when_seen_twice(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    hole = view(acked_head=103, next_offset=110, position=110, end=110)
    watch = watch_with(monkeypatch, [hole, hole, view(acked_head=100, end=110)])
    watch.check(None, [TP], None, now=0)
    assert actions["rewind"] == []  # might be a batch on its way
    watch.check(None, [TP], None, now=5)
    assert actions["rewind"] == [100]
    watch.check(None, [TP], None, now=10)
    assert actions["rewind"] == [100]


def test_a_hole_that_is_a_known_gap_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    gap = view(acked_head=103, gap_at_committed=True, end=110)
    watch = watch_with(monkeypatch, [gap, gap])
    watch.check(None, [TP], None, now=0)
    watch.check(None, [TP], None, now=5)
    assert actions["rewind"] == []


def test_markers_at_the_end_of_a_partition_become_a_gap(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    tail = view(committed=7, next_offset=7, position=9, end=9)
    watch = watch_with(monkeypatch, [tail, tail])
    watch.check(None, [TP], None, now=0)
    assert actions["gap"] == []
    watch.check(None, [TP], None, now=5)
    assert actions["gap"] == [(7, 9)]


def test_records_still_to_be_fetched_are_not_a_gap(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    fetching = view(committed=7, next_offset=9, position=9, end=12)  # 7-8 in the stream
    watch = watch_with(monkeypatch, [fetching, fetching])
    watch.check(None, [TP], None, now=0)
    watch.check(None, [TP], None, now=5)
    assert actions["gap"] == []


def test_a_partition_behind_without_progress_is_read_again(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    stuck = view(committed=100, next_offset=150, position=150, end=400)
    watch = watch_with(monkeypatch, [stuck] * 4)
    for now in (0, 5, 15):
        watch.check(None, [TP], None, now=now)
    assert actions["rewind"] == []
    watch.check(None, [TP], None, now=21)
    assert actions["rewind"] == [100] and actions["refetch"] == [TP]


def test_progress_or_no_lag_is_not_a_stall(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    moving = [view(committed=100 + n, next_offset=200, end=400) for n in range(5)]
    caught_up = [view()] * 5
    watch = watch_with(monkeypatch, moving + caught_up)
    for now in range(0, 50, 10):
        watch.check(None, [TP], None, now=now)
    for now in range(50, 100, 10):
        watch.check(None, [TP], None, now=now)
    assert actions["rewind"] == []


def test_a_partition_never_fetched_is_behind_by_the_brokers_end(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    """Seen in the SIGKILL test: after a restart three partitions were never fetched again;
    the consumer had no end for them (it learns one from a fetch), so only the broker's
    end offsets show that they are behind."""
    never = view(committed=1640, next_offset=1640, position=1640, end=None, fetching="paused")
    watch = watch_with(monkeypatch, [never] * 3)
    watch.check(None, [TP], {TP: 2131}, now=0)
    watch.check(None, [TP], {TP: 2131}, now=10)
    watch.check(None, [TP], {TP: 2131}, now=20)
    assert actions["rewind"] == [1640] and actions["refetch"] == [TP]


def test_offsets_deleted_by_retention_before_they_were_read_are_committed_past(
    monkeypatch: pytest.MonkeyPatch, actions: dict[str, list[Any]]
) -> None:
    """A group offline longer than the topic's retention: its commit (100) is below the
    log start (250). aiokafka resets the fetch to 250, and the records from 250 on are
    processed (acked_head); without a gap at the commit the hole rule read the partition
    again from 100 every few seconds and the commit never moved."""
    deleted = view(committed=100, acked_head=260, next_offset=300, position=300, end=300)
    settled = view(
        committed=100, acked_head=260, gap_at_committed=True, next_offset=300, position=300,
        end=300,
    )  # fmt: skip
    watch = watch_with(monkeypatch, [deleted, settled, deleted, settled, settled])
    watch.check(None, [TP], {TP: 300}, now=0, starts={TP: 250})
    watch.check(None, [TP], {TP: 300}, now=5, starts={TP: 250})
    assert actions["gap"] == [(100, 250), (100, 250)]
    assert actions["rewind"] == []
    watch.check(None, [TP], {TP: 300}, now=10, starts={TP: 90})  # a commit above the start
    assert actions["gap"] == [(100, 250), (100, 250)]


async def test_records_of_an_older_generation_or_taken_while_stopped_are_dropped() -> None:
    """As faust's stream decides at its take: dropped records are neither tracked (faust's
    rebalance would wait for their acks) nor acked (the seek reads them again)."""
    handler = Recorder()
    stream = Stream()
    cp, task = await started(handler, stream)
    app = cp.app
    stream.queue.put_nowait(Event(0, handler.acks))
    await settle()
    handler.boxes[0].confirmed.set_result(None)
    await settle()
    assert handler.batches == [[0]] and handler.acks == [0]
    app.consumer_generation_id = 2  # a rebalance; offset 1 was fetched before it
    stream.queue.put_nowait(Event(1, handler.acks, generation=1))
    stream.queue.put_nowait(Event(2, handler.acks, generation=2))
    await settle()
    assert handler.batches == [[0], [2]]
    handler.boxes[1].confirmed.set_result(None)
    await settle()
    assert handler.acks == [0, 2]
    assert [m.offset for m in app.consumer.unacked] == [0, 2]  # tracked when taken
    await stopped(task, handler.boxes)


async def test_the_queue_is_emptied_when_the_flow_resumes_after_a_rebalance() -> None:
    handler = Recorder()
    stream = Stream()
    cp, task = await started(handler, stream)
    cp.app.flow_control.suspend()
    for offset in (5, 6):
        stream.queue.put_nowait(Event(offset, handler.acks))
    await settle()
    assert handler.batches == []  # taken while stopped: dropped
    stream.queue.put_nowait(Event(7, handler.acks))
    assert cp.queue.qsize() == 1
    cp.app.flow_control.resume()  # faust seeks to the committed offsets: read again
    assert cp.queue.qsize() == 0
    stream.queue.put_nowait(Event(5, handler.acks))
    await settle()
    assert handler.batches == [[5]] and cp.app.consumer.unacked[-1].offset == 5
    await stopped(task, handler.boxes)


async def test_a_full_queue_pauses_the_partition_and_the_fetch_loop_waits_for_room() -> None:
    """faust's back-pressure for a stream's queue, on the checkpoint's: the partition is
    taken out of fetching at 80 %, taken back once the queue drained."""
    handler = Recorder()
    stream = Stream()
    cp, task = await started(handler, stream, batch_max=1000)
    paused = cp.app.consumer.paused
    size = cp.queue.maxsize
    for offset in range(size + 1):  # nothing taken yet: the first batch is on its way
        stream.queue.put_nowait(Event(offset, handler.acks))
    assert paused  # the partition stopped being fetched
    for _ in range(50):
        await settle()
        for box in handler.boxes:
            if not box.confirmed.done():
                box.confirmed.set_result(None)
    await asyncio.wait_for(asyncio.gather(*stream.queue.waiting), 5)
    assert [o for batch in handler.batches for o in batch] == list(range(size + 1))
    assert paused == []  # taken back
    await stopped(task, handler.boxes)


def fill(cp: Checkpoint, acks: list[int]) -> None:
    """Queue records until the checkpoint's queue is full (nothing takes them)."""
    for offset in range(cp.queue.maxsize):
        assert cp.arrive(Event(offset, acks).message, TP) is None


async def test_a_rebalance_that_empties_a_full_queue_releases_the_waiting_fetch_loop() -> None:
    """faust's flow control empties the queue on a rebalance, which cancels the fetch loop's
    wait for room: the record is dropped (read again after the seek), and nothing is raised
    into faust's fetch loop (raised there, it crashed the worker)."""
    acks: list[int] = []
    app = fake_app()
    cp = Checkpoint(app, Stream(), Recorder(), "interactions", batch_max=100)
    fill(cp, acks)
    waiting = cp.arrive(Event(cp.queue.maxsize, acks).message, TP)
    assert waiting is not None
    delivery = asyncio.ensure_future(waiting)
    await settle()
    assert not delivery.done()
    app.flow_control.suspend()
    app.flow_control.clear()  # faust's on_partitions_revoked
    await asyncio.wait_for(delivery, 5)
    assert delivery.exception() is None and cp.queue.qsize() == 0


async def test_a_stopping_fetch_loop_is_still_cancelled() -> None:
    app = fake_app()
    cp = Checkpoint(app, Stream(), Recorder(), "interactions", batch_max=100)
    fill(cp, [])
    delivery = asyncio.ensure_future(cp.arrive(Event(cp.queue.maxsize, []).message, TP))
    await settle()
    delivery.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivery


async def test_a_full_queue_pauses_its_partition_once_with_fausts_tp() -> None:
    """One pause per partition however many records arrive past 80 % (the queue knows the
    callbacks by identity), and faust's TP, whose pause asserts the type, also for records
    that come through the stream (their tp is aiokafka's)."""
    app = fake_app()
    stream = Stream()
    cp = Checkpoint(app, stream, Recorder(), "interactions", batch_max=100)
    feeder = asyncio.ensure_future(cp._feed())
    for offset in range(cp.queue.maxsize):
        stream.yielded.put_nowait(Event(offset, []))
    await asyncio.sleep(0.05)
    assert cp.queue.qsize() == cp.queue.maxsize
    assert app.consumer.paused == [TP] and type(app.consumer.paused[0]) is faust.types.TP
    feeder.cancel()


async def test_taking_records_tells_fausts_idle_stream_check() -> None:
    handler = Recorder()
    stream = Stream()
    cp, task = await started(handler, stream)
    stream.queue.put_nowait(Event(0, handler.acks))
    await settle()
    assert TP in cp.app.monitor.stream_inbound_time
    await stopped(task, handler.boxes)


async def test_a_closed_checkpoint_drops_its_queue_and_resumes_its_partitions() -> None:
    acks: list[int] = []
    app = fake_app()
    cp = Checkpoint(app, Stream(), Recorder(), "interactions", batch_max=100)
    fill(cp, acks)
    delivery = asyncio.ensure_future(cp.arrive(Event(cp.queue.maxsize, acks).message, TP))
    await settle()
    assert app.consumer.paused == [TP]
    cp.close()
    await asyncio.wait_for(delivery, 5)
    assert cp.queue.qsize() == 0 and app.consumer.paused == [] and acks == []
