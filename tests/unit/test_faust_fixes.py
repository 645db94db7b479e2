"""The commit corrections: a committed offset never passes a record not yet processed."""

from __future__ import annotations

import asyncio
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


def test_markers_at_the_end_of_a_partition_are_committed_past() -> None:
    """Nothing acked after them: faust alone would never look at these gaps."""
    assert new_offset(consumer(7, [], gaps=[(7, 9)])) == 9
    assert new_offset(consumer(7, [], gaps=[(7, 8), (8, 10)])) == 10
    assert new_offset(consumer(7, [], gaps=[(9, 10)])) is None  # 7-8 still unread
    assert new_offset(consumer(7, [])) is None


class Committing:
    """faust's own commit path (`_commit_tps` -> `_new_offset` -> `_commit_offsets`) over
    a broker that refuses or takes the commit."""

    _commit_tps = Consumer._commit_tps
    _filter_committable_offsets = Consumer._filter_committable_offsets
    _commit_offsets = Consumer._commit_offsets
    _new_offset = Consumer._new_offset
    _should_commit = Consumer._should_commit

    def __init__(self, committed: int, acked: list[int], broker_takes: bool) -> None:
        base = consumer(committed, acked)
        self.__dict__.update(base.__dict__)
        self.broker_takes = broker_takes
        self.in_transaction = False
        self.log = SimpleNamespace(dev=lambda *a, **k: None, info=lambda *a, **k: None)
        self.app = SimpleNamespace(
            producer=SimpleNamespace(flush=self._noop),
            tables=SimpleNamespace(on_commit=lambda offsets: None),
            monitor=SimpleNamespace(on_tp_commit=lambda offsets: None),
        )

    async def _noop(self) -> None:
        return None

    async def _handle_attached(self, offsets: object) -> None:
        return None

    def assignment(self) -> set[str]:
        return {"tp"}

    async def _commit(self, offsets: object) -> bool:
        return self.broker_takes  # False: aiokafka's "already rebalanced", swallowed by faust


async def test_a_commit_the_broker_refused_is_tried_again() -> None:
    c = Committing(57, [57, 58, 59], broker_takes=False)
    assert await c._commit_tps(["tp"], True) is False
    assert c._committed_offset["tp"] == 57  # faust alone says 60
    assert c._acked["tp"] == [57, 58, 59]  # faust alone took them out: never committed
    c.broker_takes = True
    assert await c._commit_tps(["tp"], True) is True
    assert c._committed_offset["tp"] == 60 and c._acked["tp"] == []


def test_another_faust_version_is_refused_with_one_line(monkeypatch) -> None:
    import faust

    assert faust_fixes.version_problem() is None
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    problem = faust_fixes.version_problem()
    assert problem is not None and "0.15.3" in problem and "0.16.0" in problem
    assert "\n" not in problem


def test_no_commit_passes_a_skipped_record_before_it_is_read_again() -> None:
    """Seen in the soak: ten records a worker had found skipped (and asked to read again)
    3 s before its SIGKILL were committed past. Whatever lets a run reach past them (a gap,
    no commit yet to start from), the commit stops at the first of them until processed."""
    c = consumer(None, [100, 101, 102, 103, 110, 111])  # no commit yet: faust's own rule
    c._gap["tp"].addi(104, 110)  # offsets 104-109 are believed to hold nothing ...
    faust_fixes.rewind(c, "tp", 104, hold=True)  # ... but the stream found them skipped
    assert new_offset(c) == 104
    assert c._acked["tp"] == [110, 111]  # what was processed after them stays acked
    c._committed_offset["tp"] = 104  # as faust records it after the commit
    assert new_offset(c) is None  # still not read again
    c._acked["tp"][:0] = [104, 105, 106, 107, 108, 109]  # read again and processed
    c._acked_index["tp"].update(range(104, 110))
    assert new_offset(c) == 112
    assert "tp" not in faust_fixes.ledger(c).holds


def test_an_assignment_of_another_topic_layout_is_found() -> None:
    """A static member's cached assignment after its topics were made again with another
    partition count: partitions that do not exist, or partitions nobody holds."""
    from streamapp.worker.faust_fixes import layout_problem

    now = {"a": {0, 1, 2, 3}, "b": {0}}
    assert layout_problem({"a": {0, 1, 2, 3}, "b": {0}}, now.get) is None
    assert layout_problem({"a": {0, 1, 2, 3}, "unknown": {5}}, now.get) is None  # no metadata
    assert (
        layout_problem({"a": set(range(8))}, now.get)
        == "a: assigned [4, 5, 6, 7] that do not exist"
    )
    assert layout_problem({"a": {0, 1}, "b": {0}}, now.get) == "a: nobody holds [2, 3]"
    both = layout_problem({"a": {0, 1}, "b": {0, 1}}, now.get)
    assert both == "a: nobody holds [2, 3]; b: assigned [1] that do not exist"


class Delivering:
    """Just what Consumer.wait_first (faust_fixes 12., then mode's) reads of a consumer."""

    def __init__(self) -> None:
        import asyncio

        self.suspend_flow = asyncio.Event()
        self._stopped = asyncio.Event()
        self._crashed = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    wait_first = Consumer.wait_first


async def test_a_delivery_that_does_not_wait_is_done_at_once() -> None:
    import asyncio
    import inspect

    c = Delivering()
    got: list[int] = []

    async def deliver(n: int) -> int:
        got.append(n)
        return n * 2

    tasks_before = len(asyncio.all_tasks())
    interrupt = c.suspend_flow.wait()
    result = await c.wait_first(deliver(7), interrupt)
    assert got == [7] and result.results == [14] and not result.stopped
    assert len(asyncio.all_tasks()) == tasks_before  # no task was made for it
    assert inspect.getcoroutinestate(interrupt) == inspect.CORO_CLOSED  # no "never awaited"


async def test_a_delivery_that_waits_is_finished_as_faust_would() -> None:
    import asyncio

    c = Delivering()
    room = asyncio.Event()
    got: list[str] = []

    async def deliver() -> str:
        got.append("decoded")
        await room.wait()  # the stream's queue is full
        got.append("queued")
        await asyncio.sleep(0)
        return "done"

    asyncio.get_running_loop().call_later(0.05, room.set)
    result = await c.wait_first(deliver(), c.suspend_flow.wait())
    assert got == ["decoded", "queued"] and result.results == ["done"]

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("bad record")

    try:
        await c.wait_first(fails(), c.suspend_flow.wait())
    except ValueError as exc:
        assert str(exc) == "bad record"
    else:
        raise AssertionError("the delivery's error was lost")


async def test_a_rebalance_interrupts_a_waiting_delivery_as_before() -> None:
    import asyncio

    c = Delivering()
    never = asyncio.Event()
    ended: list[str] = []

    async def deliver() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    asyncio.get_running_loop().call_later(0.05, c.suspend_flow.set)
    interrupt = c.suspend_flow.wait()
    result = await c.wait_first(deliver(), interrupt)
    await asyncio.sleep(0)
    assert result.done == [interrupt] and result.results == [True]
    assert ended == ["cancelled"]  # mode's wait_first cancels the loser, as it always did

    # Already suspended: mode's own path from the start (nothing is run at once).
    got: list[int] = []

    async def quick() -> None:
        got.append(1)

    result = await c.wait_first(quick(), c.suspend_flow.wait())
    assert got == [1] and not result.stopped


async def test_the_end_of_recovery_hands_out_nothing_before_its_seek(monkeypatch) -> None:
    """faust resumed the consumer's flow before `on_recovery_completed` made the stream
    partitions fetchable, sought them and cleared the streams' queues: records handed out
    in between were cleared and read again (13.). The flow is stopped while it runs; faust
    resumes it at its end."""
    seen: list[bool] = []
    consumer = FlowOnly()
    consumer.resume_flow()  # as faust's "Resuming flow..." left it

    async def faust_completes(self: object, generation_id: int = 0) -> None:
        seen.append(consumer.flow_active)  # what the seek and the clear run under
        consumer.resume_flow()  # faust's own last steps

    monkeypatch.setattr(faust_fixes, "_original_on_recovery_completed", faust_completes)
    recovery = SimpleNamespace(app=SimpleNamespace(consumer=consumer))
    await faust_fixes._on_recovery_completed(recovery, 3)
    assert seen == [False] and consumer.flow_active


class FlowOnly:
    """faust's own flow switches on an object with nothing else."""

    stop_flow = Consumer.stop_flow
    resume_flow = Consumer.resume_flow

    def __init__(self) -> None:
        self.flow_active = False
        self.can_resume_flow = asyncio.Event()
        self.suspend_flow = asyncio.Event()
