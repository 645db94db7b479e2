"""Standby records applied a fetch at a time (faust_fixes 11.): what reaches a standby's
database is what faust's own standby path would write, in changelog order, with faust's
persisted offset; faust's recovery objects are real (faust 0.15.3), the fetch is scripted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP

from streamapp.worker import faust_fixes

CHANGELOG = "standby-test-t-changelog"


def make_app(tmp_path: Path) -> tuple[Any, Any]:
    app = faust.App("standby-test", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table(
        "t",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=4,
        options={"driver": "rocksdict"},
    )
    return app, table


def record(offset: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(offset=offset, key=key, value=value)


def consumer_of(app: Any) -> Any:
    return SimpleNamespace(app=app, flow_active=True, _read_offset={})


def buffered_event(tp: TP, offset: int, key: bytes, value: bytes | None) -> Any:
    message = SimpleNamespace(tp=tp, partition=tp.partition, offset=offset, key=key, value=value)
    return SimpleNamespace(message=message)


def test_a_fetch_of_standby_partitions_is_written_in_order_with_its_offset(
    tmp_path: Path,
) -> None:
    app, table = make_app(tmp_path)
    recovery = app.tables.recovery
    standby, active = TP(CHANGELOG, 1), TP(CHANGELOG, 0)
    recovery.add_standby(table, standby)
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
    consumer = consumer_of(app)
    faust_fixes._apply_standby_fetch(consumer, records)

    # Only the standby's records were taken; the stream's and the active changelog's stay
    # for faust (an active changelog is read by recovery, which counts what remains).
    assert set(records) == {active, other}
    db = table.data._db_for_partition(1)
    assert db.get(b"a") == b"2" and db.get(b"b") is None
    assert table.data.persisted_offset(standby) == 9
    assert recovery.standby_offsets[standby] == 9
    assert consumer._read_offset[standby] == 9
    assert table.data._db_for_partition(0).get(b"c") is None


def test_records_already_applied_are_not_written_again(tmp_path: Path) -> None:
    # A fetch that overlaps what was applied (a seek back, faust's own path before this
    # partition became a standby here) must not put an older value back.
    app, table = make_app(tmp_path)
    recovery = app.tables.recovery
    tp = TP(CHANGELOG, 2)
    recovery.add_standby(table, tp)
    consumer = consumer_of(app)
    faust_fixes._apply_standby_fetch(consumer, {tp: [record(10, b"k", b"new")]})
    faust_fixes._apply_standby_fetch(consumer, {tp: [record(9, b"k", b"old")]})
    assert table.data._db_for_partition(2).get(b"k") == b"new"
    assert table.data.persisted_offset(tp) == 10  # not back to 9
    faust_fixes._apply_standby_fetch(
        consumer, {tp: [record(9, b"k", b"old"), record(10, b"k", b"new")]}
    )
    assert table.data._db_for_partition(2).get(b"k") == b"new"
    assert table.data.persisted_offset(tp) == 10

    faust_fixes._apply_standby_fetch(
        consumer, {tp: [record(10, b"k", b"new"), record(11, b"k", b"newer")]}
    )
    assert table.data._db_for_partition(2).get(b"k") == b"newer"
    assert table.data.persisted_offset(tp) == 11


def test_what_faust_buffered_earlier_is_written_first(tmp_path: Path) -> None:
    app, table = make_app(tmp_path)
    recovery = app.tables.recovery
    tp = TP(CHANGELOG, 3)
    recovery.add_standby(table, tp)
    # faust's recovery loop took offsets 20-21 (it buffers up to 1,000 before writing) and
    # moved the standby's offset past them.
    recovery.buffers[table].extend(
        [buffered_event(tp, 20, b"k", b"old"), buffered_event(tp, 21, b"j", b"1")]
    )
    recovery.standby_offsets[tp] = 21
    faust_fixes._apply_standby_fetch(consumer_of(app), {tp: [record(22, b"k", b"new")]})
    db = table.data._db_for_partition(3)
    assert db.get(b"k") == b"new" and db.get(b"j") == b"1"
    assert not recovery.buffers[table]
    assert table.data.persisted_offset(tp) == 22


def test_during_a_rebalance_the_fetch_is_left_to_faust(tmp_path: Path) -> None:
    app, table = make_app(tmp_path)
    tp = TP(CHANGELOG, 1)
    app.tables.recovery.add_standby(table, tp)
    consumer = consumer_of(app)
    consumer.flow_active = False
    records = {tp: [record(1, b"k", b"v")]}
    faust_fixes._apply_standby_fetch(consumer, records)
    assert tp in records  # faust drops it too, and seeks once the rebalance is over
    assert table.data._db_for_partition(1).get(b"k") is None
