"""Micro-benchmark: the cost of one more interaction for a pair that already has many.

    python -m bench.pair_micro            # pairs with 10 .. 100,000 interactions in 30 days

For each size: build the pair (ids at 36 characters, event times spread over 30 days,
arriving out of order), then time what a batch does per touched pair: read its stored
value, decode, apply one interaction, encode, and collect the chunk writes; plus what a
lookup does (decode for lookup, three window counts). Reports microseconds and the bytes
written per update, which stay bounded (chunks) however hot the pair.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid

from streamapp.core.pair_state import Interaction, PairState

DAY_US = 86_400 * 1_000_000
NOW = 1_800_000_000 * 1_000_000


def build(n: int, rng: random.Random) -> tuple[PairState, dict[bytes, bytes]]:
    state = PairState()
    chunks: dict[bytes, bytes] = {}
    for i in range(n):
        on = NOW - rng.randrange(30 * DAY_US)
        state.apply(
            Interaction(str(uuid.UUID(int=rng.getrandbits(128))), "u", "s", i % 4, on, 0, i),
            NOW,
            7 * 86400,
            7 * 86400,
            chunks.get,
        )
        for key, value in state.chunk_writes.items():
            if value is None:
                chunks.pop(key, None)
            else:
                chunks[key] = value
        state.chunk_writes.clear()
    return state, chunks


def main() -> None:
    rng = random.Random(1)
    heads = ("interactions", "update µs", "lookup µs", "value bytes", "written/update", "chunks")
    print(" ".join(f"{h:>14}" for h in heads))
    for n in (10, 1_000, 10_000, 100_000):
        state, chunks = build(n, rng)
        raw = state.encode()
        update_us, written, lookup_us = [], [], []
        for i in range(200):
            t0 = time.perf_counter()
            s = PairState.decode(raw)
            s.apply(
                Interaction(f"new-{i}", "u", "s", 1, NOW - rng.randrange(DAY_US), 1, i),
                NOW,
                7 * 86400,
                7 * 86400,
                chunks.get,
            )
            out = s.encode()
            update_us.append((time.perf_counter() - t0) * 1e6)
            written.append(len(out) + sum(len(v or b"") for v in s.chunk_writes.values()))
            t0 = time.perf_counter()
            look = PairState.decode_for_lookup(raw)
            for w in (1, 7, 30):
                look.window_count(NOW, w * DAY_US, chunks.get)
            lookup_us.append((time.perf_counter() - t0) * 1e6)
        row = (
            f"{n:,}",
            f"{statistics.median(update_us):.1f}",
            f"{statistics.median(lookup_us):.1f}",
            f"{len(raw):,}",
            f"{statistics.median(written):,.0f}",
            f"{len(chunks)}",
        )
        print(" ".join(f"{c:>14}" for c in row))


if __name__ == "__main__":
    main()
