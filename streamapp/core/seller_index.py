"""Each user's set of sellers (the candidates of top-k), bounded per stored value.

Stored under the user id: either the seller ids themselves (b"\\x01" + ids joined by
\\x1f), or, once a user has more than `SHARD_MAX` sellers, b"\\x02" + the shard count,
with the ids spread over `<user>\\x1e<n>` by a stable hash. A shard that outgrows
`SHARD_MAX` doubles the shard count (every shard is rewritten once, amortised). Ids never
contain control characters (models.EntityId), so the separators are unambiguous.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable

SEP = b"\x1f"
SHARD_SEP = b"\x1e"
INLINE, SHARDED = b"\x01", b"\x02"
SHARD_MAX = 1024
COUNT = struct.Struct("<I")

Load = Callable[[bytes], bytes | None]
Writes = dict[bytes, bytes | None]


def _ids(raw: bytes | None) -> list[bytes]:
    return raw.split(SEP) if raw else []


def _shard_key(user_key: bytes, n: int) -> bytes:
    return user_key + SHARD_SEP + str(n).encode()


def _shard_of(seller: bytes, shards: int) -> int:
    return zlib.crc32(seller) % shards


def _layout(user_key: bytes, load: Load) -> tuple[int, dict[int, list[bytes]]]:
    """(shard count, loaded shards); shard count 0 means the inline form."""
    raw = load(user_key)
    if not raw:
        return 0, {0: []}
    if raw[:1] == INLINE:
        return 0, {0: _ids(raw[1:])}
    return COUNT.unpack_from(raw, 1)[0], {}


def sellers(user_key: bytes, load: Load) -> list[str]:
    shards, loaded = _layout(user_key, load)
    if shards == 0:
        ids = loaded[0]
    else:
        ids = [s for n in range(shards) for s in _ids(load(_shard_key(user_key, n)))]
    return [s.decode() for s in ids]


def add(user_key: bytes, new: Iterable[str], load: Load) -> Writes:
    """The writes that add the sellers in `new` (a no-op for those already there)."""
    shards, loaded = _layout(user_key, load)
    if shards == 0:
        ids = loaded[0]
        have = set(ids)
        fresh = [s for s in dict.fromkeys(x.encode() for x in new) if s not in have]
        if not fresh:
            return {}
        ids = ids + fresh
        if len(ids) <= SHARD_MAX:
            return {user_key: INLINE + SEP.join(ids)}
        return _reshard(user_key, ids, 2 * (len(ids) // SHARD_MAX + 1), [])
    by_shard: dict[int, list[bytes]] = {}
    for s in dict.fromkeys(x.encode() for x in new):
        by_shard.setdefault(_shard_of(s, shards), []).append(s)
    writes: Writes = {}
    grown = False
    for n, candidates in by_shard.items():
        ids = _ids(load(_shard_key(user_key, n)))
        have = set(ids)
        fresh = [s for s in candidates if s not in have]
        if fresh:
            loaded[n] = ids + fresh
            writes[_shard_key(user_key, n)] = SEP.join(loaded[n])
            grown = grown or len(loaded[n]) > SHARD_MAX
    if not grown:
        return writes
    everything = [
        s for n in range(shards) for s in loaded.get(n) or _ids(load(_shard_key(user_key, n)))
    ]
    return _reshard(user_key, everything, 2 * shards, list(range(shards)))


def _reshard(user_key: bytes, ids: list[bytes], shards: int, old: list[int]) -> Writes:
    groups: dict[int, list[bytes]] = {n: [] for n in range(shards)}
    for s in ids:
        groups[_shard_of(s, shards)].append(s)
    writes: Writes = {_shard_key(user_key, n): None for n in old}
    writes.update({_shard_key(user_key, n): SEP.join(g) for n, g in groups.items()})
    writes[user_key] = SHARDED + COUNT.pack(shards)
    return writes
