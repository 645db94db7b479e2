"""Standby records applied a fetch at a time (faust_fixes 11.): what reaches a standby's
database is what faust's own standby path would write, in changelog order, with faust's
persisted offset, and only from fetches that began after faust's recovery sought the
partition in this generation; faust's recovery objects are real (faust 0.15.3), the
consumer and the fetch are scripted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streamapp.worker import faust_fixes
from tests.unit.faust_tables import changelog_event, rocksdb_table

faust_fixes.apply()

CHANGELOG = "standby-test-t-changelog"


def make_app(tmp_path: Path) -> tuple[Any, Any]:
    table = rocksdb_table(tmp_path, "standby-test")
    return table.app, table


def record(offset: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(offset=offset, key=key, value=value)


class Fetching:
    """What 11. reads of faust's consumer; `fetch` runs the patched step on one fetch as
    `_wait_next_records` does (the seek count when it began, the partitions faust fetches)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.flow_active = True
        self._read_offset: dict[Any, int] = {}
        self.sought: list[dict[Any, int]] = []

    async def seek_wait(self, offsets: dict[Any, int]) -> None:
        self.sought.append(dict(offsets))

    def fetch(self, records: dict[Any, Any], began: int | None = None, active: Any = None) -> None:
        book = faust_fixes.ledger(self)
        seeks = book.seeks if began is None else began
        faust_fixes._apply_standby_fetch(self, book, records, active, seeks)


async def standby_here(app: Any, table: Any, consumer: Fetching, *tps: TP) -> None:
    """A standby as faust's recovery sets one up: assigned, then sought to its offset."""
    recovery = app.tables.recovery
    for tp in tps:
        recovery.add_standby(table, tp)
        persisted = table.data.persisted_offset(tp)  # what faust's _build_offsets reads
        recovery.standby_offsets[tp] = -1 if persisted is None else persisted
    await recovery._seek_offsets(consumer, set(tps), recovery.standby_offsets, "standby")


async def test_a_fetch_of_standby_partitions_is_written_in_order_with_its_offset(
    tmp_path: Path,
) -> None:
    app, table = make_app(tmp_path)
    recovery = app.tables.recovery
    consumer = Fetching(app)
    standby, active = TP(CHANGELOG, 1), TP(CHANGELOG, 0)
    await standby_here(app, table, consumer, standby)
    assert consumer.sought == [{standby: 0}]  # faust's own seek ran
    recovery.add_active(table, active)
    other = TP("interactions", 1)
    records = {
        standby: [
            record(5, b"a", b"1"),
            record(6, b"b", b"x"),
            record(8, b"a", b"2"),  # offset 7: a marker or compacted away
            record(9, b"b", None),
        ],
        active: [record(3, b"c", b"v")],
        other: [record(40, b"u", b"{}")],
    }
    consumer.fetch(records)

    # Only the standby's records were taken; the stream's and the active changelog's stay
    # for faust (an active changelog is read by recovery, which counts what remains).
    assert set(records) == {active, other}
    db = table.data._db_for_partition(1)
    assert db.get(b"a") == b"2" and db.get(b"b") is None
    assert table.data.persisted_offset(standby) == 9
    assert recovery.standby_offsets[standby] == 9
    assert consumer._read_offset[standby] == 9
    assert table.data._db_for_partition(0).get(b"c") is None


async def test_records_already_applied_are_not_written_again(tmp_path: Path) -> None:
    # A fetch that overlaps what was applied, or lies wholly before it, must not put an
    # older value back nor move the offset back.
    app, table = make_app(tmp_path)
    consumer = Fetching(app)
    tp = TP(CHANGELOG, 2)
    await standby_here(app, table, consumer, tp)
    db = table.data._db_for_partition(2)
    consumer.fetch({tp: [record(10, b"k", b"new")]})
    consumer.fetch({tp: [record(9, b"k", b"old")]})
    assert db.get(b"k") == b"new" and table.data.persisted_offset(tp) == 10
    consumer.fetch({tp: [record(9, b"k", b"old"), record(10, b"k", b"new")]})
    assert db.get(b"k") == b"new" and table.data.persisted_offset(tp) == 10

    consumer.fetch({tp: [record(10, b"k", b"new"), record(11, b"k", b"newer")]})
    assert db.get(b"k") == b"newer"
    assert table.data.persisted_offset(tp) == 11


async def test_what_faust_buffered_earlier_is_written_first(tmp_path: Path) -> None:
    app, table = make_app(tmp_path)
    recovery = app.tables.recovery
    consumer = Fetching(app)
    tp = TP(CHANGELOG, 3)
    await standby_here(app, table, consumer, tp)
    # faust's recovery loop took offsets 20-21 (it buffers up to 1,000 before writing) and
    # moved the standby's offset past them.
    recovery.buffers[table].extend(
        [
            changelog_event(CHANGELOG, 3, 20, b"k", b"old"),
            changelog_event(CHANGELOG, 3, 21, b"j", b"1"),
        ]
    )
    recovery.standby_offsets[tp] = 21
    consumer.fetch({tp: [record(22, b"k", b"new")]})
    db = table.data._db_for_partition(3)
    assert db.get(b"k") == b"new" and db.get(b"j") == b"1"
    assert not recovery.buffers[table]
    assert table.data.persisted_offset(tp) == 22


async def test_a_fetch_that_cannot_be_written_is_read_again_never_left_to_faust(
    tmp_path: Path,
) -> None:
    # faust's recovery loop drops a record queued before newer ones were written here as
    # already seen: a standby's records never go its way while 11. writes the partition.
    app, table = make_app(tmp_path)
    recovery = app.tables.recovery
    consumer = Fetching(app)
    book = faust_fixes.ledger(consumer)
    tp = TP(CHANGELOG, 1)
    db = table.data._db_for_partition(1)

    def dropped(records: dict[Any, Any], read_again_from: int | None) -> None:
        assert tp not in records, "left to faust's own path"
        assert db.get(b"k") is None
        assert book.rewinds.get(tp) == read_again_from
        book.rewinds.pop(tp, None)

    # Not sought yet in this generation: aiokafka fetches paused partitions too, from
    # wherever their position is; faust's seek, still to come, reads them from the start.
    recovery.add_standby(table, tp)
    recovery.standby_offsets[tp] = -1
    records = {tp: [record(1, b"k", b"v")]}
    consumer.fetch(records)
    dropped(records, None)

    await recovery._seek_offsets(consumer, {tp}, recovery.standby_offsets, "standby")
    # A fetch that began before that seek, one a seek elsewhere overlapped, one of a paused
    # partition: read again from where the copy ends.
    records = {tp: [record(1, b"k", b"v")]}
    consumer.fetch(records, began=book.seeks - 1)
    dropped(records, 0)
    records = {tp: [record(1, b"k", b"v")]}
    faust_fixes._apply_standby_fetch(consumer, book, records, None, None)  # stale
    dropped(records, 0)
    records = {tp: [record(1, b"k", b"v")]}
    consumer.fetch(records, active={TP("interactions", 0)})
    dropped(records, 0)

    consumer.fetch({tp: [record(1, b"k", b"v")]})
    assert db.get(b"k") == b"v" and table.data.persisted_offset(tp) == 1
    records = {tp: [record(3, b"k", b"w")]}
    consumer.fetch(records, began=book.seeks - 1)
    assert tp not in records and book.rewinds.pop(tp) == 2  # after what is written
    assert db.get(b"k") == b"v"

    # A rebalance: the flow is stopped; faust drops the fetch and seeks afterwards.
    consumer.flow_active = False
    records = {tp: [record(3, b"k", b"w")]}
    consumer.fetch(records)
    assert tp in records and tp not in book.rewinds
    consumer.flow_active = True
    # The next generation: dropped until faust's seek of that generation.
    app.consumer_generation_id += 1
    records = {tp: [record(3, b"k", b"w")]}
    consumer.fetch(records)
    assert tp not in records and tp not in book.rewinds and db.get(b"k") == b"v"
    # A partition active and standby at once (a moment of a rebalance): recovery's own.
    await recovery._seek_offsets(consumer, {tp}, recovery.standby_offsets, "standby")
    recovery.add_active(table, tp)
    records = {tp: [record(3, b"k", b"w")]}
    consumer.fetch(records)
    assert tp in records and db.get(b"k") == b"v"

    recovery.active_tps.discard(tp)
    consumer.fetch({tp: [record(3, b"k", b"w")]})
    assert db.get(b"k") == b"w"  # and now it is
