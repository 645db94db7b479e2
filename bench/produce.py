"""Interactions at a fixed rate, open loop; optionally the freshness of their updates.

    python -m bench.produce --bootstrap 127.0.0.1:29092 --topic P-interactions \
        --rate 1000 --duration 60 --id-prefix bg- [--freshness P-affinity-updates]

Message i is due at start + i / rate and is sent then, however late the previous ones
were (open loop). With --freshness, the process also reads the updates topic (from its
end at start-up): the freshness of one interaction is the time the first update covering
it arrived minus the time the interaction was *due* to be produced, so a producer that
falls behind shows up as staleness instead of being hidden. One JSON object is printed on
stdout at the end. SIGTERM ends the run early (the summary is still printed).

Matching updates to interactions works with both kinds of affinity-updates. A coalesced
update (the default) covers `interactions_covered` interactions of its pair; an update
without the field (STREAMAPP_UPDATES=each) covers one. A pair's interactions go to one
partition (key = user id) and are counted in the order they were sent, so the k-th
interaction of a pair is covered by the first update that brings the pair's covered count
to k. This assumes, as the run guarantees, that nobody else sends interactions meanwhile (the
worker is caught up when the run starts) and that ids are unique (no duplicates to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import deque

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import PARTITIONS, summary_ms
from bench.data import Sampler, covered_by, interaction


async def run(args: argparse.Namespace) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sampler = Sampler(args.users, args.sellers, args.user_skew, args.seller_skew, args.seed)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks=1, linger_ms=args.linger_ms)
    await producer.start()
    consumer = None
    # (user id, seller id) -> due times of its interactions not covered by an update yet.
    pending: dict[tuple[str, str], deque[float]] = {}
    outstanding = 0
    fresh: list[float] = []
    consumed = asyncio.Event()
    if args.freshness:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=args.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await consumer.start()
        tps = [TopicPartition(args.freshness, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve "end" now, before anything is produced

    async def read_updates() -> None:
        nonlocal outstanding
        assert consumer is not None
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            arrived = time.monotonic()
            for records in batch.values():
                for record in records:
                    update = orjson.loads(record.value)
                    waiting = pending.get((update.get("user_id"), update.get("seller_id")))
                    if not waiting:
                        continue
                    for _ in range(min(covered_by(record.value), len(waiting))):
                        fresh.append(arrived - waiting.popleft())
                        outstanding -= 1
            if sent_all and not outstanding:
                consumed.set()

    sent_all = False
    reader = asyncio.create_task(read_updates()) if consumer else None
    n_total = int(args.rate * args.duration)
    pairs = sampler.pairs(min(n_total, 200_000))
    kinds = sampler.kinds(len(pairs))
    lag: list[float] = []
    futures = []
    sent = 0
    start = time.monotonic() + 0.2
    try:
        while sent < n_total and not stop.is_set():
            now = time.monotonic()
            due = start + sent / args.rate
            if due > now:
                await asyncio.sleep(min(due - now, 0.05))
                continue
            # Everything due by now goes out in this turn (open loop).
            while sent < n_total and start + sent / args.rate <= now:
                due = start + sent / args.rate
                u, s = pairs[sent % len(pairs)]
                iid = f"{args.id_prefix}{sent}"
                user = f"{args.user_prefix}u{u}"
                value = interaction(iid, u, s, kinds[sent % len(kinds)], time.time(), user)
                if consumer:
                    pending.setdefault((user, f"s{s}"), deque()).append(due)
                    outstanding += 1
                futures.append(await producer.send(args.topic, value, key=user.encode()))
                lag.append(time.monotonic() - due)
                sent += 1
            if len(futures) > 5_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        elapsed = time.monotonic() - start
        sent_all = True
        if reader:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumed.wait(), args.wait)
    finally:
        if reader:
            reader.cancel()
        await producer.stop()
        if consumer:
            await consumer.stop()
    out = {
        "target_rate": args.rate,
        "sent": sent,
        "seconds": round(elapsed, 3),
        "achieved_rate": round(sent / elapsed, 1) if elapsed > 0 else None,
        "send_lag_ms": summary_ms(lag, (50, 99)),
        # CLOCK_MONOTONIC, which the benchmark process shares: its idle windows are read
        # between the two (bench.common.MainThreadIdle).
        "sending_monotonic": [round(start, 3), round(start + elapsed, 3)],
    }
    if consumer:
        missing = outstanding
        out["freshness_ms"] = summary_ms(fresh + [float("inf")] * missing)
        out["updates_matched"] = len(fresh)
        out["updates_missing"] = missing
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.produce", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, required=True, help="interactions per second")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--id-prefix", default="p-")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument(
        "--user-prefix", default="", help="before every user id (users apart from a preload's)"
    )
    p.add_argument("--sellers", type=int, default=1_000)
    p.add_argument("--user-skew", type=float, default=0.8)
    p.add_argument("--seller-skew", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--linger-ms", type=int, default=1)
    p.add_argument("--freshness", metavar="UPDATES_TOPIC", help="measure freshness on this topic")
    p.add_argument("--wait", type=float, default=30.0, help="max seconds to wait for updates")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
