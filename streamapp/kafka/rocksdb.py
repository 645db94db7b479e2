"""Small reads over rocksdict that the worker's tables and the serving process share."""

from __future__ import annotations

from collections.abc import Iterator

from rocksdict import Rdict


def keys_with_prefix(db: Rdict, prefix: bytes) -> Iterator[bytes]:
    """The keys of `db` that start with `prefix`, in ascending order (one seek, then next)."""
    for key in db.keys(from_key=prefix):
        if not key.startswith(prefix):
            return
        yield key
