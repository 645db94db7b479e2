"""A table held in a dict, for the pure state code's tests (reads and batch writes)."""

from __future__ import annotations


class MemoryTable(dict[bytes, bytes]):
    def load(self, key: bytes) -> bytes | None:
        return self.get(key)

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value

    def scan(self, prefix: bytes) -> list[bytes]:
        """The keys that start with `prefix`, in order (as RocksDB iterates them)."""
        return sorted(k for k in self if k.startswith(prefix))
