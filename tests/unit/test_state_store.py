"""StateStore leans on faust's private RocksDB store names; these tests fail loudly if a
faust upgrade changes them, and prove that what we write is what faust's recovery and
standby replicas write from the changelog (same bytes, same partition database)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import faust
from faust.types import TP

from streamapp.worker.state_store import StateStore


def make_table(tmp_path: Path) -> faust.Table:
    app = faust.App("state-store-test", store="rocksdb://", datadir=str(tmp_path))
    return app.Table(
        "t",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=4,
        options={"driver": "rocksdict"},
    )


def changelog_event(topic: str, partition: int, offset: int, key: bytes, value: bytes | None):
    message = SimpleNamespace(
        tp=TP(topic, partition), partition=partition, offset=offset, key=key, value=value
    )
    return SimpleNamespace(message=message)


def test_private_names_still_exist(tmp_path: Path) -> None:
    store = make_table(tmp_path).data
    for name in ("_db_for_partition", "_dbs", "set_persisted_offset", "persisted_offset"):
        assert hasattr(store, name), f"faust's RocksDB store lost {name}: update faust_fixes.py"


def test_our_writes_equal_what_recovery_writes(tmp_path: Path) -> None:
    table = make_table(tmp_path)
    ours = StateStore(table)
    ours.write(2, {b"k1": b"v1", b"k2": b"\x00\xff", b"gone": b"x"})
    ours.write(2, {b"gone": None})
    assert ours.get(2, b"k1") == b"v1" and ours.get(2, b"gone") is None
    assert ours.get(1, b"k1") is None  # another partition's database
    assert ours.read_many(2, [b"k1", b"k2", b"nope"]) == [b"v1", b"\x00\xff", None]

    # faust's recovery applies changelog records as raw bytes to the partition's database:
    # the records we send (same key and value bytes) rebuild exactly our state.
    changelog = ours.changelog
    table.data.apply_changelog_batch(
        [
            changelog_event(changelog, 3, 10, b"k1", b"v1"),
            changelog_event(changelog, 3, 11, b"k2", b"\x00\xff"),
        ],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )
    assert ours.read_many(3, [b"k1", b"k2"]) == [b"v1", b"\x00\xff"]
    assert table.data.persisted_offset(TP(changelog, 3)) == 11

    ours.persisted(2, 41)
    assert table.data.persisted_offset(TP(changelog, 2)) == 41
