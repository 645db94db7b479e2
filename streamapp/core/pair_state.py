"""The state of one user-seller pair, how interactions change it, and its binary form.

Everything a lookup needs is in here, cheap to update per event and exact at query time:
- counts per kind, first/last event time;
- per-kind decay accumulators relative to a reference time, so the score at any as_of is
  one multiplication (2^-(as_of-on)/h = 2^-(as_of-ref)/h * 2^(on-ref)/h);
- the event times of the last `WINDOW_RETENTION_US`, so 1d/7d/30d windows are exact at
  any as_of;
- the highest source offset applied per partition of `interactions`, so a redelivered or
  replayed record is recognised whatever its timestamps (docs/exactness.md);
- a 64-bit hash of every interaction id counted within the dedupe horizon, with the
  wall-clock time it was first counted.

Bounded size: the value stays small however hot the pair. Event times and seen ids keep
up to `INLINE` entries in the value itself; beyond that they spill into chunk records
stored next to it (key = pair key + `CHUNK_SEP` + kind + number), each at most
`CHUNK_MAX` entries, filling the last chunk before starting one. Time chunks cover
disjoint, ordered time ranges, so a window count reads at most the chunks that straddle
its two ends; seen-id chunks are sealed in arrival order, sorted, and dropped whole once
the horizon has passed the newest id in them. The worker keeps the sealed chunks it has
read across batches (`SealedIds`).

The encoding is fixed-layout binary (struct + array): decoding a pair costs a few
microseconds whatever its history, with no per-field Python work for the header.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

US = 1_000_000
DAY_US = 86_400 * US
WINDOWS_US = {"1d": DAY_US, "7d": 7 * DAY_US, "30d": 30 * DAY_US}
W1, W7, W30 = WINDOWS_US.values()
WINDOW_RETENTION_US = max(WINDOWS_US.values())
# Rebase the decay reference before 2^((on-ref)/h) leaves float range comfortably.
REBASE_HALF_LIVES = 256.0

# Event times / seen ids kept in the value itself. Small, because a batch that touches a
# pair decodes, encodes and writes all of them: a hot pair's value of 1,024 of each
# (24 KiB) cost 200-300 µs a batch (bench.hot_pair_micro); spills go to the last chunk
# while it has room, so chunks stay few however small this is.
INLINE = 256
CHUNK_MAX = 2048  # entries per spilled chunk (16 KiB)
CHUNK_SEP = b"\x1e"  # ids never contain control characters (models.EntityId)
TIMES, SEEN = b"t", b"s"

# The encoding of the pair table's values (their first byte): raised on any change of it,
# together with the state's format (core/state_format.py), which the app records and a
# worker checks at start-up.
VALUE_FORMAT = 2
# version, counts x4, first, last, ref, acc x4, next chunk, n offsets, n times, n seen,
# n time chunks, n seen chunks
HEADER_FORMAT = "<B4Iqqq4dIIIIII"
HEADER = struct.Struct(HEADER_FORMAT)
# After the header, 8 bytes an entry, little-endian: the offsets (partition, offset: 2 q
# each), the inline times (q), the seen ids' hashes (Q), when each was counted (q), the
# time chunks' entries (number, lo, hi, count: 4 q) and the seen chunks' (number, newest,
# count: 3 q). tests/unit/test_pair_state.py packs it with struct and compares.


_INTS: dict[int, struct.Struct] = {}


def _ints(n: int) -> struct.Struct:
    """The layout of n stored 64-bit integers (offsets, chunk entries), compiled once."""
    layout = _INTS.get(n)
    if layout is None:
        if len(_INTS) >= 4096:
            _INTS.clear()
        layout = _INTS[n] = struct.Struct(f"<{n}q")
    return layout


class Interaction(NamedTuple):
    """An accepted interaction, as the counting path sees it."""

    id: str
    user_id: str
    seller_id: str
    kind: int  # index into models.KIND_ORDER
    on_us: int  # event time
    src_partition: int  # where it was read in `interactions`: its identity for replays
    src_offset: int


class Outcome(enum.Enum):
    COUNTED = "counted"
    DUPLICATE = "duplicate"  # same interaction id within the dedupe horizon
    REPLAY = "replay"  # a source record already applied (redelivery after a crash)


def id_hash(interaction_id: str) -> int:
    """64 bits of BLAKE2b: ids of any length in 8 bytes; a collision among the ids of one
    pair within the horizon has probability ~n^2/2^65 (1e-10 at 100,000 ids)."""
    return int.from_bytes(hashlib.blake2b(interaction_id.encode(), digest_size=8).digest())


Loader = Callable[[bytes], bytes | None]  # chunk suffix -> stored bytes


def chunk_suffix(kind: bytes, number: int) -> bytes:
    return CHUNK_SEP + kind + str(number).encode()


def read_chunk(kind: bytes, number: int, load: Loader) -> array:
    """A chunk record's entries (none when it is absent): event times signed, id hashes
    unsigned, 8 bytes each."""
    values = array("q" if kind == TIMES else "Q")
    raw = load(chunk_suffix(kind, number))
    if raw:
        values.frombytes(raw)
    return values


@dataclass(slots=True)
class PairState:
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    first_us: int = 0  # meaningful when total > 0
    last_us: int = 0
    ref_us: int = 0
    acc: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    offsets: dict[int, int] = field(default_factory=dict)  # source partition -> offset
    # The inline parts as their stored bytes: decoding and encoding them is a copy, not a
    # Python int per entry (a value of 256 of each took 50 µs to decode and encode as a
    # list and a dict, 7 µs so; docs/performance.md, 7 December, afternoon).
    times: array = field(default_factory=lambda: array("q"))  # inline event times, sorted
    seen_ids: bytearray = field(default_factory=bytearray)  # id hashes, 8 bytes each (LE)
    seen_at: array = field(default_factory=lambda: array("q"))  # when each was counted
    tchunks: list[list[int]] = field(default_factory=list)  # [number, lo, hi, count], by lo
    schunks: list[list[int]] = field(default_factory=list)  # [number, newest, count]
    next_chunk: int = 0
    # Not stored: chunks read or changed while this state is being updated.
    chunk_cache: dict[bytes, array] = field(default_factory=dict)
    chunk_writes: dict[bytes, bytes | None] = field(default_factory=dict)
    sealed_seen: dict[int, array] = field(default_factory=dict)  # chunk -> sorted hashes
    # Sealed chunks read from the table, as (number, newest, count, hashes).
    sealed_read: list[tuple[int, int, int, array]] = field(default_factory=list)

    @property
    def total(self) -> int:
        c = self.counts
        return c[0] + c[1] + c[2] + c[3]

    # -- binary form ---------------------------------------------------------------------
    def encode(self) -> bytes:
        n_off, n_t, n_s = len(self.offsets), len(self.times), len(self.seen_at)
        n_tc, n_sc = len(self.tchunks), len(self.schunks)
        parts: list[bytes | bytearray] = [
            HEADER.pack(
                VALUE_FORMAT,
                *self.counts,
                self.first_us,
                self.last_us,
                self.ref_us,
                *self.acc,
                self.next_chunk,
                n_off,
                n_t,
                n_s,
                n_tc,
                n_sc,
            )
        ]
        if n_off:
            flat = [v for item in self.offsets.items() for v in item]
            parts.append(_ints(2 * n_off).pack(*flat))
        parts.append(self.times.tobytes())
        parts.append(self.seen_ids)
        parts.append(self.seen_at.tobytes())
        if n_tc or n_sc:
            flat = [v for chunk in self.tchunks for v in chunk]
            flat += [v for chunk in self.schunks for v in chunk]
            parts.append(_ints(len(flat)).pack(*flat))
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> PairState:
        head = HEADER.unpack_from(raw)
        if head[0] != VALUE_FORMAT:
            raise ValueError(f"unknown pair state format {head[0]}")
        n_off, n_t, n_s, n_tc, n_sc = head[13:18]
        at = HEADER.size + 16 * n_off
        ends = at + 8 * n_t, at + 8 * (n_t + n_s), at + 8 * (n_t + 2 * n_s)
        if len(raw) != ends[2] + 8 * (4 * n_tc + 3 * n_sc):
            raise ValueError(f"pair state of {len(raw)} bytes, its header says otherwise")
        view = memoryview(raw)
        times, seen_at = array("q"), array("q")
        times.frombytes(view[at : ends[0]])
        seen_ids = bytearray(view[ends[0] : ends[1]])
        seen_at.frombytes(view[ends[1] : ends[2]])
        offsets: dict[int, int] = {}
        if n_off:
            flat = _ints(2 * n_off).unpack_from(raw, HEADER.size)
            offsets = dict(zip(flat[::2], flat[1::2], strict=True))
        tchunks: list[list[int]] = []
        schunks: list[list[int]] = []
        if n_tc or n_sc:
            flat = _ints(4 * n_tc + 3 * n_sc).unpack_from(raw, ends[2])
            tchunks = [list(flat[j : j + 4]) for j in range(0, 4 * n_tc, 4)]
            schunks = [list(flat[j : j + 3]) for j in range(4 * n_tc, len(flat), 3)]
        return cls(
            counts=list(head[1:5]),
            first_us=head[5],
            last_us=head[6],
            ref_us=head[7],
            acc=list(head[8:12]),
            offsets=offsets,
            times=times,
            seen_ids=seen_ids,
            seen_at=seen_at,
            tchunks=tchunks,
            schunks=schunks,
            next_chunk=head[12],
        )

    @staticmethod
    def decode_for_lookup(raw: bytes) -> PairView:
        """What a feature vector reads, without what only counting needs (PairView)."""
        return PairView(raw)

    # -- chunks --------------------------------------------------------------------------
    def _chunk(self, kind: bytes, number: int, load: Loader) -> array:
        """A chunk's entries as an array: bisection and insertion work on it in place, and
        writing it back is one copy (no list of ints either way)."""
        suffix = chunk_suffix(kind, number)
        cached = self.chunk_cache.get(suffix)
        if cached is None:
            cached = self.chunk_cache[suffix] = read_chunk(kind, number, load)
        return cached

    def _put_chunk(self, kind: bytes, number: int, values: array) -> None:
        suffix = chunk_suffix(kind, number)
        self.chunk_cache[suffix] = values
        self.chunk_writes[suffix] = values.tobytes()

    def _drop_chunk(self, kind: bytes, number: int) -> None:
        suffix = chunk_suffix(kind, number)
        self.chunk_cache.pop(suffix, None)
        self.chunk_writes[suffix] = None

    def _new_chunk(self) -> int:
        self.next_chunk += 1
        return self.next_chunk

    # -- seen ids ------------------------------------------------------------------------
    def _expire_seen(self, oldest_us: int) -> None:
        while self.schunks and self.schunks[0][1] < oldest_us:
            number = self.schunks.pop(0)[0]
            self._drop_chunk(SEEN, number)
            self.sealed_seen.pop(number, None)
        at = self.seen_at
        if at and at[0] < oldest_us:
            keep = [i for i, t in enumerate(at) if t >= oldest_us]
            ids = self.seen_ids
            self.seen_ids = bytearray().join(ids[8 * i : 8 * i + 8] for i in keep)
            self.seen_at = array("q", [at[i] for i in keep])

    def _was_seen(self, digest: int, load: Loader) -> bool:
        if _holds(self.seen_ids, digest.to_bytes(8, "little")):
            return True
        if not self.schunks:
            return False
        # Sealed chunks are sorted: a binary search in each, no set built per batch (a pair
        # with 100,000 ids has ~50 chunks: reading them is a copy, searching ~50 x 11 steps).
        for entry in self.schunks:
            hashes = self._sealed(entry, load)
            i = bisect.bisect_left(hashes, digest)
            if i < len(hashes) and hashes[i] == digest:
                return True
        return False

    def _sealed(self, entry: list[int], load: Loader) -> array:
        """The sorted hashes of the sealed chunk `entry` ([number, newest, count]): read once
        per state, and noted in `sealed_read` so a SealedIds can keep them for later
        batches."""
        number = entry[0]
        hashes = self.sealed_seen.get(number)
        if hashes is None:
            hashes = self.sealed_seen[number] = read_chunk(SEEN, number, load)
            self.sealed_read.append((entry[0], entry[1], entry[2], hashes))
        return hashes

    def _remember(self, digest: int, now_us: int, load: Loader) -> None:
        self.seen_ids += digest.to_bytes(8, "little")
        self.seen_at.append(now_us)
        if len(self.seen_at) > INLINE:
            # Sealed into the last chunk while it has room (it then goes when the newest of
            # all its ids is past the horizon), else into a new one.
            hashes = sorted(array("Q", self.seen_ids))
            newest = max(self.seen_at)
            last = self.schunks[-1] if self.schunks else None
            if last is not None and last[2] + len(hashes) <= CHUNK_MAX:
                number = last[0]
                hashes = sorted(self._sealed(last, load).tolist() + hashes)
                self.schunks[-1] = [number, max(last[1], newest), len(hashes)]
            else:
                number = self._new_chunk()
                self.schunks.append([number, newest, len(hashes)])
            # A new array: one read from the table may be shared (SealedIds), never changed.
            sealed = self.sealed_seen[number] = array("Q", hashes)
            self._put_chunk(SEEN, number, sealed)
            self.seen_ids = bytearray()
            self.seen_at = array("q")

    # -- event times ---------------------------------------------------------------------
    def _add_time(self, on_us: int, load: Loader) -> None:
        chunks = self.tchunks
        if not chunks or on_us >= chunks[-1][2]:
            bisect.insort(self.times, on_us)
            if len(self.times) > INLINE:
                # The older half goes to the last chunk while it has room (every inline
                # time is at or after its range), else to a new chunk.
                half = len(self.times) // 2
                lower, self.times = self.times[:half], self.times[half:]
                if chunks and chunks[-1][3] + half <= CHUNK_MAX:
                    number = chunks[-1][0]
                    values = self._chunk(TIMES, number, load)
                    values.extend(lower)
                    chunks[-1] = [number, values[0], values[-1], len(values)]
                else:
                    number = self._new_chunk()
                    values = lower
                    chunks.append([number, lower[0], lower[-1], len(lower)])
                self._put_chunk(TIMES, number, values)
            return
        # The first chunk whose range reaches up to on_us (ranges are ordered).
        i = bisect.bisect_left([c[2] for c in chunks], on_us)
        entry = chunks[i]
        values = self._chunk(TIMES, entry[0], load)
        bisect.insort(values, on_us)
        if len(values) > CHUNK_MAX:
            half = len(values) // 2
            lower, upper = values[:half], values[half:]
            number = self._new_chunk()
            self._put_chunk(TIMES, entry[0], lower)
            self._put_chunk(TIMES, number, upper)
            chunks[i] = [entry[0], lower[0], lower[-1], len(lower)]
            chunks.insert(i + 1, [number, upper[0], upper[-1], len(upper)])
        else:
            self._put_chunk(TIMES, entry[0], values)
            chunks[i] = [entry[0], values[0], values[-1], len(values)]

    def _expire_times(self, horizon_us: int) -> None:
        """Forget event times at or before `horizon_us`: no window can count them again.
        A chunk goes once all of it is that old (window counts are exact either way)."""
        while self.tchunks and self.tchunks[0][2] <= horizon_us:
            self._drop_chunk(TIMES, self.tchunks.pop(0)[0])
        if self.times and self.times[0] <= horizon_us:
            del self.times[: bisect.bisect_right(self.times, horizon_us)]

    def window_count(self, as_of_us: int, window_us: int, load: Loader) -> int:
        """Interactions with event time in (as_of - window, as_of]."""
        return window_count(
            self.times, self.tchunks, as_of_us, window_us, lambda n: self._chunk(TIMES, n, load)
        )

    def window_counts(self, as_of_us: int, load: Loader) -> tuple[int, int, int]:
        """The 1d, 7d and 30d window counts (without chunks: one bisection for their common
        end, as PairView's)."""
        if not self.tchunks:
            return inline_window_counts(self.times, as_of_us)
        count = self.window_count
        return count(as_of_us, W1, load), count(as_of_us, W7, load), count(as_of_us, W30, load)

    # -- counting ------------------------------------------------------------------------
    def apply(
        self,
        event: Interaction,
        now_us: int,
        half_life_s: float,
        dedupe_horizon_s: float,
        load: Loader,
    ) -> Outcome:
        """Count `event` into this state at most once."""
        if event.src_offset <= self.offsets.get(event.src_partition, -1):
            return Outcome.REPLAY
        self.offsets[event.src_partition] = event.src_offset

        horizon_us = int(dedupe_horizon_s * US)
        if horizon_us > 0:
            # Measured from when an id was first counted (wall clock), not on the record's
            # own timestamp: a backfill's old timestamps must not shorten it.
            self._expire_seen(now_us - horizon_us)
            digest = id_hash(event.id)
            if self._was_seen(digest, load):
                return Outcome.DUPLICATE
            self._remember(digest, now_us, load)

        on = event.on_us
        kind = event.kind
        self.counts[kind] += 1
        if self.total == 1:
            self.first_us = self.last_us = self.ref_us = on
        else:
            self.first_us = min(self.first_us, on)
            self.last_us = max(self.last_us, on)

        half_life_us = half_life_s * US
        if (on - self.ref_us) / half_life_us > REBASE_HALF_LIVES:
            shift = 2.0 ** ((self.ref_us - on) / half_life_us)
            self.acc = [a * shift for a in self.acc]
            self.ref_us = on
        exponent = max((on - self.ref_us) / half_life_us, -1074.0)
        self.acc[kind] += 2.0**exponent

        horizon = now_us - WINDOW_RETENTION_US
        if on > horizon:
            self._add_time(on, load)
        self._expire_times(horizon)
        return Outcome.COUNTED


class SealedIds:
    """Sealed seen-id chunks read from the pair table, kept across batches: a batch that
    touches a hot pair would otherwise read all of them again to check one id (100,000 ids
    within the horizon are 50 chunks; bench.hot_pair_micro). Bounded by `max_ids` hashes (8
    bytes each), the least recently used go first.

    A chunk is known by its pair and its whole entry (number, newest, count): one merged into
    since has another entry, and numbers are never reused. That holds while nothing but the
    owner's own counting writes its partitions, so the owner clears this on every change of
    assignment (a partition restored from its changelog may hold another worker's chunks
    under the same numbers); `generation` tells a batch that began before a clear not to
    keep what it read."""

    def __init__(self, max_ids: int = 4_000_000) -> None:
        self.max_ids = max_ids
        self.generation = 0
        self._chunks: dict[tuple[bytes, int, int, int], array] = {}
        self._ids = 0

    def __len__(self) -> int:
        return len(self._chunks)

    def clear(self) -> None:
        self._chunks.clear()
        self._ids = 0
        self.generation += 1

    def fill(self, key: bytes, state: PairState) -> None:
        """Give the freshly decoded `state` of pair `key` the sealed chunks kept for it."""
        chunks = self._chunks
        for number, newest, count in state.schunks:
            hashes = chunks.pop((key, number, newest, count), None)
            if hashes is not None:
                chunks[key, number, newest, count] = hashes  # now the most recently used
                state.sealed_seen[number] = hashes

    def keep(self, key: bytes, state: PairState, generation: int) -> None:
        """Keep what `state` (pair `key`) read from the table, if no clear came since
        `generation`."""
        read = state.sealed_read
        if generation == self.generation:
            chunks = self._chunks
            for number, newest, count, hashes in read:
                if len(hashes) == count and (key, number, newest, count) not in chunks:
                    chunks[key, number, newest, count] = hashes
                    self._ids += count
            while self._ids > self.max_ids:
                oldest = next(iter(chunks))
                self._ids -= len(chunks.pop(oldest))
        read.clear()


def _holds(ids: bytearray, needle: bytes) -> bool:
    """Whether `ids` (8-byte entries) holds `needle`: a byte search, whose match must start
    on an entry's boundary."""
    i = ids.find(needle)
    while i >= 0:
        if i % 8 == 0:
            return True
        i = ids.find(needle, i + 1)
    return False


class Summary(NamedTuple):
    """What ranking needs from a stored pair, read from the fixed header alone."""

    total: int
    ref_us: int
    acc: tuple[float, float, float, float]


def window_count(
    times: Sequence[int],
    tchunks: list[list[int]],
    as_of_us: int,
    window_us: int,
    chunk: Callable[[int], Sequence[int]],
) -> int:
    """Interactions with event time in (as_of - window, as_of]: inline times by bisection,
    time chunks by their ranges (read only when the window cuts through one)."""
    low = as_of_us - window_us
    n = bisect.bisect_right(times, as_of_us) - bisect.bisect_right(times, low)
    for number, lo, hi, count in tchunks:
        if hi <= low or lo > as_of_us:
            continue
        if lo > low and hi <= as_of_us:
            n += count
        else:
            values = chunk(number)
            n += bisect.bisect_right(values, as_of_us) - bisect.bisect_right(values, low)
    return n


class PairView:
    """A stored pair as a lookup reads it: counts, first/last, decay, and event times left
    packed (bisection reads the array in place); no offsets or seen ids. Read-only: a
    lookup decodes one per pair, so it is a few attribute stores, not a PairState."""

    __slots__ = (
        "_cache",
        "acc",
        "counts",
        "first_us",
        "last_us",
        "ref_us",
        "tchunks",
        "times",
        "times_at",
    )

    def __init__(self, raw: bytes) -> None:
        head = header(raw)
        n_t, n_s, n_tc = head[14:17]
        start = inline_times_at(head)
        self.counts = head[1:5]
        self.first_us, self.last_us, self.ref_us = head[5], head[6], head[7]
        self.acc = head[8:12]
        times = array("q")
        times.frombytes(raw[start : start + 8 * n_t])
        self.times = times
        self.times_at = start  # where the inline times are in `raw` (8 bytes each)
        self.tchunks: list[list[int]] = []
        if n_tc:
            flat = struct.unpack_from(f"<{4 * n_tc}q", raw, start + 8 * n_t + 16 * n_s)
            self.tchunks = [list(flat[j : j + 4]) for j in range(0, len(flat), 4)]
        self._cache: dict[int, array] = {}

    @property
    def total(self) -> int:
        c = self.counts
        return c[0] + c[1] + c[2] + c[3]

    def window_counts(self, as_of_us: int, load: Loader) -> tuple[int, int, int]:
        """The 1d, 7d and 30d window counts: one bisection for their common end."""
        if self.tchunks:
            count = self.window_count
            return count(as_of_us, W1, load), count(as_of_us, W7, load), count(as_of_us, W30, load)
        return inline_window_counts(self.times, as_of_us)

    def window_count(self, as_of_us: int, window_us: int, load: Loader) -> int:
        if not self.tchunks:
            times = self.times
            return bisect.bisect_right(times, as_of_us) - bisect.bisect_right(
                times, as_of_us - window_us
            )

        def chunk(number: int) -> array:
            found = self._cache.get(number)
            if found is None:
                found = self._cache[number] = read_chunk(TIMES, number, load)
            return found

        return window_count(self.times, self.tchunks, as_of_us, window_us, chunk)


def inline_window_counts(times: Sequence[int], as_of_us: int) -> tuple[int, int, int]:
    """The 1d, 7d and 30d window counts of sorted event times (a pair without chunks): one
    bisection for their common end."""
    if not times:
        return 0, 0, 0
    end = bisect.bisect_right(times, as_of_us)
    return (
        end - bisect.bisect_right(times, as_of_us - W1, 0, end),
        end - bisect.bisect_right(times, as_of_us - W7, 0, end),
        end - bisect.bisect_right(times, as_of_us - W30, 0, end),
    )


def few_window_counts(times: Sequence[int], as_of_us: int) -> tuple[int, int, int]:
    """inline_window_counts of a few event times (any order): one pass, no bisection."""
    w1 = w7 = w30 = 0
    low1, low7, low30 = as_of_us - W1, as_of_us - W7, as_of_us - W30
    for t in times:
        if low30 < t <= as_of_us:
            w30 += 1
            if t > low7:
                w7 += 1
                if t > low1:
                    w1 += 1
    return w1, w7, w30


# The fields of a stored header (`header`) a first-sight lookup reads.
H_COUNTS, H_FIRST, H_LAST, H_REF, H_ACC = 1, 5, 6, 7, 8  # counts: 1..4, acc: 8..11
H_N_OFFSETS, H_N_TIMES, H_N_TIME_CHUNKS = 13, 14, 16
FEW_TIMES = 8  # what few_times reads
_FEW: list[struct.Struct] = [struct.Struct(f"<{n}q") for n in range(FEW_TIMES + 1)]


def header(raw: bytes) -> tuple[Any, ...]:
    """The stored value's header fields (HEADER_FORMAT, indexed by the H_ names): what a
    lookup reads of a pair without building a PairView."""
    h = HEADER.unpack_from(raw)
    if h[0] != VALUE_FORMAT:
        raise ValueError(f"unknown pair state format {h[0]}")
    return h


def inline_times_at(h: tuple[Any, ...]) -> int:
    """Where a value with header `h` keeps its inline event times (8 bytes each)."""
    return HEADER.size + 16 * h[H_N_OFFSETS]


def few_times(raw: bytes, at: int, n: int) -> tuple[int, ...]:
    """n <= FEW_TIMES inline event times from offset `at`, as a tuple."""
    return _FEW[n].unpack_from(raw, at)  # type: ignore[return-value]


def summary(raw: bytes) -> Summary:
    v = header(raw)
    return Summary(v[1] + v[2] + v[3] + v[4], v[7], (v[8], v[9], v[10], v[11]))
