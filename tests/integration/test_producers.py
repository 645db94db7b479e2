"""Whatever a Kafka producer may do, the counts stay exact (contract: "Any Kafka producer may
write the input topics: any partitioner, any compression codec Kafka defines, transactional
or not. Input is read committed: records of aborted transactions never count.").

Every record here comes from a real aiokafka producer configured like a third party's:
compressed with each codec, inside transactions that commit or abort while other producers
write beside them, and with transaction markers as the last thing in a partition.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from streamapp.core.models import AffinityUpdate, DeadLetter
from tests.dataset import DataSet
from tests.harness import (
    Namespace,
    Out,
    Worker,
    committed_and_end,
    consume_all,
    send_all,
    wait_until,
)
from tests.integration.checks import (
    assert_matches_truth,
    metric_sum,
    metrics_text,
    wait_for_commits_at_end,
    wait_for_total,
)
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration

CODECS = (None, "gzip", "snappy", "lz4", "zstd")
KINDS = ["LIKE", "VIEW", "PURCHASE", "OTHER", "like", "CLICK", ""]
ABORTED_ONLY = ("tx-aborted-user", "tx-aborted-seller")  # written only by aborted transactions


# -- helpers ----------------------------------------------------------------------------
@dataclass
class Ix:
    """One interaction record and what the truth needs to count it."""

    out: Out
    iid: str
    user: str
    seller: str
    kind: str
    on: datetime


def make(
    ns: Namespace,
    rng: random.Random,
    now: datetime,
    iid: str,
    user: str | None = None,
    seller: str | None = None,
    partition: int | None = None,
) -> Ix:
    """An interaction as a real producer sends it: key none / the user id / random bytes;
    about a third without `on`, whose event time is then the (explicit) record timestamp."""
    user = user or f"u{rng.randrange(40)}"
    seller = seller or f"s{rng.randrange(15)}"
    kind = rng.choice(KINDS)
    body: dict[str, str] = {
        "id": iid,
        "user_id": user,
        "seller_id": seller,
        "interaction_kind": kind,
    }
    if rng.random() < 0.35:
        timestamp_ms = int((now - timedelta(seconds=rng.uniform(60, 6 * 86400))).timestamp() * 1000)
        on = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    else:
        on = now - timedelta(seconds=rng.uniform(0, 20 * 86400))
        body["on"] = on.isoformat()
        # The record timestamp says something else: `on` must win.
        timestamp_ms = int((now - timedelta(days=rng.uniform(0, 3))).timestamp() * 1000)
    key = rng.choice([None, user.encode(), rng.randbytes(6)])
    out = Out(ns.topic("interactions"), json.dumps(body).encode(), key, timestamp_ms, partition)
    return Ix(out, iid, user, seller, kind, on)


def count(ds: DataSet, ix: Ix) -> None:
    """`ix` was (or will be) visible to a read-committed reader: the truth counts it."""
    if ds.truth.interact(ix.iid, ix.user, ix.seller, ix.kind, ix.on):
        ds.counted_ids.append(ix.iid)


def transactional(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
    )


def plain(bootstrap: str, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**{"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 5, **kw})


async def one_transaction(
    producer: AIOKafkaProducer,
    records: Sequence[Out],
    commit: bool,
    rng: random.Random | None = None,
) -> None:
    """One transaction of `records`; every record is on the broker (inside the open
    transaction) before it commits or aborts, so an abort really leaves aborted data."""
    await producer.begin_transaction()
    futures = []
    for r in records:
        futures.append(
            await producer.send(
                r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms, partition=r.partition
            )
        )
        if rng is not None:
            await asyncio.sleep(rng.uniform(0, 0.06))  # hold it open: others write meanwhile
    await producer.flush()
    for f in futures:
        await f
    if commit:
        await producer.commit_transaction()
    else:
        await producer.abort_transaction()


def run(coro: Any, timeout: float = 120) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def pair_count(worker: Worker, user: str, seller: str) -> int:
    status, body = worker.get(f"/affinity/{user}/{seller}")
    assert status == 200, body
    return body["number_of_interactions"]


def dead_letters(ns: Namespace, expect: int) -> list[DeadLetter]:
    letters = consume_all(
        ns.bootstrap, ns.topic("interactions-dlq"), ns.partitions, expect=expect, settle=3
    )
    return [DeadLetter.model_validate_json(m.value) for m in letters]


def assert_aborted_only_pair_is_empty(worker: Worker) -> None:
    user, seller = ABORTED_ONLY
    status, body = worker.get(f"/affinity/{user}/{seller}")
    assert status == 200, body
    assert body["number_of_interactions"] == 0, body
    assert body["interactions_by_kind"] == {"LIKE": 0, "VIEW": 0, "PURCHASE": 0, "OTHER": 0}
    assert body["first_interaction_at"] is None and body["last_interaction_at"] is None, body


# -- 1. compression codecs --------------------------------------------------------------
def test_every_codec_is_counted_exactly(bootstrap: str, workers, tmp_path: Path) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    worker = new_worker(workers, ns, tmp_path / "data", "codecs").start()
    rng = random.Random(101)
    now = datetime.now(UTC)
    by_codec: dict[str | None, list[Out]] = {}
    for codec in CODECS:
        records: list[Out] = []
        for n in range(300):
            ix = make(ns, rng, now, f"{codec or 'none'}-{n}")
            count(ds, ix)
            records.append(ix.out)
            if rng.random() < 0.04:  # a producer retry: the very same record again
                records.append(ix.out)
        by_codec[codec] = records

    async def produce_with_every_codec() -> None:
        for codec, records in by_codec.items():
            # linger and a batch size that holds many records: real compressed batches
            producer = plain(bootstrap, compression_type=codec, linger_ms=50)
            await producer.start()
            try:
                await send_all(producer, records)
            finally:
                await producer.stop()

    run(produce_with_every_codec())
    sent = sum(len(r) for r in by_codec.values())
    assert ds.total == len(CODECS) * 300

    wait_for_total(worker, ds, timeout=90)
    assert_matches_truth(worker, ds)
    assert worker.alive(), worker.tail()
    assert worker.starts == 1
    letters = dead_letters(ns, expect=0)
    assert letters == [], [(d.error, d.value) for d in letters[:5]]
    # the topic holds exactly what was sent (no codec lost records on the way in)
    on_topic = consume_all(bootstrap, ns.topic("interactions"), ns.partitions, expect=sent)
    assert len(on_topic) == sent


# -- 2. aborted transactions ------------------------------------------------------------
BAD_IN_ABORTED = [
    b"{not json, aborted",
    b'{"id": "ab-bad", "user_id": ',
    b"\xff\xfe aborted binary",
    b"[1, 2, 3] aborted",
]
BAD_COMMITTED = b"{committed transaction: not json"
BAD_PLAIN = b"plain producer: not json {"


def transaction_plan(
    ns: Namespace, ds: DataSet, rng: random.Random, now: datetime, tag: str, n_tx: int
) -> list[tuple[list[Out], bool]]:
    """Transactions that commit or abort in an irregular order, several records each over
    several partitions. Aborted ones also carry the aborted-only pair and malformed records;
    some aborted ones are retried with the very same records and commit (a producer's normal
    recovery): those count once. The truth counts committed records only."""
    plan: list[tuple[list[Out], bool]] = []
    commits = [True, False, False, True, True, False, True, False, False, True][:n_tx]
    for t, commit in enumerate(commits):
        ixs = [
            make(
                ns,
                rng,
                now,
                f"{tag}-t{t}-{i}",
                partition=rng.randrange(ns.partitions) if rng.random() < 0.5 else None,
            )
            for i in range(rng.randint(4, 10))
        ]
        records = [ix.out for ix in ixs]
        if commit:
            for ix in ixs:
                count(ds, ix)
            if t == 3 and tag == "a":  # one malformed record that did commit
                records.insert(2, Out(ns.topic("interactions"), BAD_COMMITTED, b"bad"))
            plan.append((records, True))
            continue
        for i in range(2):
            ghost = make(
                ns,
                rng,
                now,
                f"{tag}-t{t}-ghost-{i}",
                *ABORTED_ONLY,
                partition=(t + i) % ns.partitions,
            )
            records.insert(rng.randrange(len(records) + 1), ghost.out)
        bad = Out(ns.topic("interactions"), BAD_IN_ABORTED[t % len(BAD_IN_ABORTED)], None)
        bad.partition = rng.randrange(ns.partitions)
        records.insert(rng.randrange(len(records) + 1), bad)
        plan.append((records, False))
        if t % 3 == 1:  # retried: the same interactions again, and this time it commits
            for ix in ixs:
                count(ds, ix)
            plan.append(([ix.out for ix in ixs], True))
    return plan


def test_aborted_transactions_are_never_counted(bootstrap: str, workers, tmp_path: Path) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    worker = new_worker(workers, ns, tmp_path / "data", "txn").start()
    rng = random.Random(202)
    now = datetime.now(UTC)
    plan_a = transaction_plan(ns, ds, rng, now, "a", 10)
    plan_b = transaction_plan(ns, ds, rng, now, "b", 8)
    plain_records: list[Out] = []
    for n in range(240):
        ix = make(ns, rng, now, f"p-{n}")
        count(ds, ix)
        plain_records.append(ix.out)
    plain_records.insert(117, Out(ns.topic("interactions"), BAD_PLAIN, None))
    assert ABORTED_ONLY not in ds.truth.pairs
    committed_or_plain = len(plain_records) + sum(
        len(r) for plan in (plan_a, plan_b) for r, ok in plan if ok
    )
    everything = len(plain_records) + sum(len(r) for plan in (plan_a, plan_b) for r, _ in plan)

    async def tx_producer(tid: str, plan: list[tuple[list[Out], bool]], seed: int) -> None:
        producer = transactional(bootstrap, f"{ns.app_id}-{tid}")
        await producer.start()
        try:
            local = random.Random(seed)
            for records, commit in plan:
                await one_transaction(producer, records, commit, local)
                await asyncio.sleep(local.uniform(0, 0.2))
        finally:
            await producer.stop()

    async def plain_producer() -> None:
        producer = plain(bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(0, len(plain_records), 12):
                await send_all(producer, plain_records[i : i + 12])
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    async def all_at_once() -> None:
        await asyncio.gather(
            tx_producer("a", plan_a, 1), tx_producer("b", plan_b, 2), plain_producer()
        )

    run(all_at_once())

    # The setup is what it claims: aborted data is on the topic, invisible when read committed.
    assert (
        len(
            consume_all(
                bootstrap,
                ns.topic("interactions"),
                8,
                everything,
                isolation_level="read_uncommitted",
            )
        )
        == everything
    )
    visible = consume_all(
        bootstrap, ns.topic("interactions"), 8, committed_or_plain, isolation_level="read_committed"
    )
    assert len(visible) == committed_or_plain
    assert everything - committed_or_plain > 40

    wait_for_total(worker, ds, timeout=90)
    assert_matches_truth(worker, ds, extra_pairs=[ABORTED_ONLY])
    assert_aborted_only_pair_is_empty(worker)
    # Only the malformed records that did commit are dead-lettered; aborted ones never are.
    letters = dead_letters(ns, expect=2)
    values = sorted(
        (d.value or "").encode() if d.value_encoding == "utf-8" else b"?" for d in letters
    )
    assert values == sorted([BAD_COMMITTED, BAD_PLAIN]), [(d.error, d.value) for d in letters]
    wait_for_commits_at_end(worker)
    assert worker.alive() and worker.starts == 1
    # Nothing was counted twice on the way: still exact once every commit is at the end.
    assert_matches_truth(worker, ds, extra_pairs=[ABORTED_ONLY])


# -- 3. a commit marker followed by a record, on an idle worker --------------------------
def test_a_transaction_marker_at_a_partitions_end_does_not_repeat_work(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    worker = new_worker(workers, ns, tmp_path / "data", "marker").start()
    rng = random.Random(303)
    now = datetime.now(UTC)
    p = 5
    first = make(ns, rng, now, "marker-tx", "marker-user", "seller-a", partition=p)
    second = make(ns, rng, now, "marker-plain", "marker-user", "seller-b", partition=p)
    count(ds, first)
    count(ds, second)

    async def transaction() -> None:
        producer = transactional(bootstrap, f"{ns.app_id}-marker")
        await producer.start()
        try:
            await one_transaction(producer, [first.out], commit=True)
        finally:
            await producer.stop()

    async def one_plain() -> None:
        producer = plain(bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            await send_all(producer, [second.out])
        finally:
            await producer.stop()

    run(transaction())
    wait_until(
        lambda: pair_count(worker, "marker-user", "seller-a") == 1, 30, what="the tx record counted"
    )
    time.sleep(5)
    before_plain = metrics_text(worker)
    run(one_plain())
    wait_for_total(worker, ds, timeout=30)
    assert_matches_truth(worker, ds)
    wait_for_commits_at_end(worker)

    topic = ns.topic("affinity-updates")
    settled = consume_all(bootstrap, topic, ns.partitions, expect=2, settle=3)
    settled_metrics = metrics_text(worker)
    samples = []
    for _ in range(5):  # watch the idle worker for 15 s
        time.sleep(3)
        samples.append(metric_sum(metrics_text(worker), "streamapp_partition_rereads_total"))
    after = consume_all(bootstrap, topic, ns.partitions, expect=len(settled), settle=2)
    final_metrics = metrics_text(worker)

    updates = [AffinityUpdate.model_validate_json(m.value) for m in after]
    rereads = [
        metric_sum(before_plain, "streamapp_partition_rereads_total"),
        metric_sum(settled_metrics, "streamapp_partition_rereads_total"),
        *samples,
    ]
    report = (
        f"updates settled {len(settled)} then {len(after)} "
        f"({[(u.interaction_id, u.interactions_covered) for u in updates]}); "
        f"rereads before the plain record, settled, then every 3 s: {rereads}; "
        f"replayed {metric_sum(final_metrics, 'streamapp_interactions_replayed_total')}"
    )
    assert len(after) == len(settled), report  # no repeats while idle
    assert len(settled) == 2, report  # one per single-record batch that changed a pair
    assert sorted(u.interaction_id for u in updates) == ["marker-plain", "marker-tx"], report
    assert len(set(rereads[1:])) == 1, report  # not increasing while idle
    assert rereads[0] == rereads[-1], report  # the marker was no reason to read anything again
    assert "streamapp_interactions_replayed_total 0.0" in final_metrics, report
    assert_matches_truth(worker, ds)
    assert worker.alive()


# -- 4. a commit marker as the last thing in a partition --------------------------------
def test_a_transaction_marker_at_the_end_then_idle_commits_to_the_end(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    ds = DataSet()
    worker = new_worker(workers, ns, tmp_path / "data", "tail").start()
    rng = random.Random(404)
    now = datetime.now(UTC)
    p = 2
    before = [make(ns, rng, now, f"tail-plain-{n}", partition=n % ns.partitions) for n in range(16)]
    tx = [
        make(ns, rng, now, f"tail-tx-{n}", "tail-user", f"tail-s{n % 2}", partition=p)
        for n in range(4)
    ]
    for ix in [*before, *tx]:
        count(ds, ix)

    async def go() -> None:
        producer = plain(bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            await send_all(producer, [ix.out for ix in before])
        finally:
            await producer.stop()
        producer = transactional(bootstrap, f"{ns.app_id}-tail")
        await producer.start()
        try:
            await one_transaction(producer, [ix.out for ix in tx], commit=True)
        finally:
            await producer.stop()

    run(go())
    wait_for_total(worker, ds, timeout=30)
    assert_matches_truth(worker, ds)

    topic = ns.topic("interactions")
    key = f"{topic}[{p}]"
    last: dict[str, tuple[int, int]] = {}

    def at_end() -> bool:
        last.update(committed_and_end(bootstrap, ns.app_id, [topic], ns.partitions))
        committed, end = last[key]
        return committed == end

    try:
        wait_until(at_end, 40, interval=1.0, what=f"{key} committed to its end")
    except TimeoutError:
        raise AssertionError(f"{key}: (committed, end) = {last.get(key)} after 40 s") from None
    assert last[key][1] == 16 // ns.partitions + len(tx) + 1  # the commit marker is its end
    wait_for_commits_at_end(worker, timeout=60)
    assert_matches_truth(worker, ds)
    _status, text = worker.get("/metrics")
    assert "streamapp_interactions_replayed_total 0.0" in text
    assert worker.alive() and worker.starts == 1
