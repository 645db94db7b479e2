"""The local-state checks that need no broker: finding databases, reading faust's offsets."""

from __future__ import annotations

from pathlib import Path

from aiokafka import TopicPartition
from rocksdict import Options, Rdict

from streamapp.kafka.local_state import (
    beyond_end,
    persisted_offsets,
    read_epoch,
    rocksdb_databases,
    wipe,
    write_epoch,
)

OFFSET_KEY = b"__faust\0offset__"


class FakeStore:
    """What faust's RocksDB store offers that the check uses; nothing about the values."""

    offset_key = OFFSET_KEY

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name

    def partition_path(self, partition: int) -> Path:
        return self.folder / f"{self.name}-{partition}.db"


def make_db(path: Path, offset: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(path), options)
    db.put(b"some key", b"any encoding at all")
    if offset is not None:
        db.put(OFFSET_KEY, str(offset).encode())
    db.close()


def test_offsets_beyond_the_changelog_end_are_found(tmp_path: Path) -> None:
    tables = tmp_path / "v1" / "tables"
    make_db(tables / "a-0.db", 41)
    make_db(tables / "a-2.db", None)  # written, never changelogged: nothing to compare
    make_db(tables / "b-1.db", 7)
    make_db(tmp_path / "seller-catalog", None)
    stores = [("app-a-changelog", FakeStore(tables, "a")), ("app-b-changelog", object())]
    offsets = persisted_offsets(stores, {"app-a-changelog": 4, "app-b-changelog": 4})
    assert offsets == {TopicPartition("app-a-changelog", 0): 41}  # b has no partition files

    a0 = TopicPartition("app-a-changelog", 0)
    assert beyond_end(offsets, {a0: 42}) is None  # offset 41 is the last record: consistent
    assert beyond_end(offsets, {a0: 41}) == (
        "app-a-changelog[0] ends at offset 41, local state is at 41"
    )
    assert beyond_end(offsets, {}) is not None  # an empty, recreated changelog

    found = rocksdb_databases(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "seller-catalog",
        "v1/tables/a-0.db",
        "v1/tables/a-2.db",
        "v1/tables/b-1.db",
    ]
    (tmp_path / "v1" / "tables" / "a-backups").mkdir()
    wipe(found)
    assert rocksdb_databases(tmp_path) == []
    assert (tmp_path / "v1" / "tables" / "a-backups").is_dir()  # only databases go


def test_epoch_file(tmp_path: Path) -> None:
    assert read_epoch(tmp_path / "new") is None
    write_epoch(tmp_path / "new", "abc")
    assert read_epoch(tmp_path / "new") == "abc"
    write_epoch(tmp_path / "new", "def")
    assert read_epoch(tmp_path / "new") == "def"
