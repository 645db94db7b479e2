"""A generated data set with everything the contract must survive, and its ground truth.

Hundreds of users and sellers, thousands of interactions (skewed), duplicated ids,
unknown and lower-case kinds, event times over 60 days and out of order (some only as
record timestamps), profiles updated and deleted mid-stream, keys absent, random or
user ids, and a few malformed records on every source topic.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from tests.harness import Namespace, Out
from tests.truth import Truth

CATEGORIES = [f"cat{i}" for i in range(10)]
KINDS = ["LIKE"] * 3 + ["VIEW"] * 6 + ["PURCHASE"] * 2 + ["OTHER", "like", "CLICK", "Purchase", ""]
# The original example's query: user 123 and these sellers (duplicates on purpose).
EXAMPLE_SELLERS = ["456", "457", "458", "458", "456", "461", "460"]


@dataclass
class DataSet:
    records: list[Out] = field(default_factory=list)
    truth: Truth = field(default_factory=Truth)
    counted_ids: list[str] = field(default_factory=list)
    bad: dict[str, list[Out]] = field(
        default_factory=lambda: {"interactions": [], "users": [], "sellers": []}
    )
    user_ids: list[str] = field(default_factory=list)
    seller_ids: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self.truth.pairs)

    @property
    def total(self) -> int:
        return len(self.counted_ids)


def _iso(moment: datetime, rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == 1:
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    if style == 2:
        return moment.replace(tzinfo=None).isoformat()  # naive: UTC
    return moment.replace(microsecond=0).isoformat()


HOT_PAIRS = [("user-1", "seller-1"), ("user-2", "seller-1"), ("user-3", "seller-2")]


def build(
    ns: Namespace,
    seed: int = 7,
    n_users: int = 300,
    n_sellers: int = 200,
    n_interactions: int = 4000,
    bad_per_topic: int = 6,
    hot_share: float = 0.0,
) -> DataSet:
    """`hot_share` of the interactions go to three hot pairs, whose event times and ids
    spill into chunk records (pair_state.INLINE) and fill them."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    ds = DataSet()
    ds.user_ids = ["123", *(f"user-{i}" for i in range(n_users - 1))]
    ds.seller_ids = [
        "456",
        "457",
        "458",
        "460",
        "461",
        *(f"seller-{i}" for i in range(n_sellers - 5)),
    ]
    user_weights = [1 / (i + 1) ** 0.8 for i in range(len(ds.user_ids))]
    user_weights[0] = user_weights[1]  # user 123 is busy, like the original's example
    seller_weights = [1 / (i + 1) ** 0.6 for i in range(len(ds.seller_ids))]

    def put_user(uid: str) -> None:
        favs = rng.sample(CATEGORIES, rng.randrange(0, 4))
        ds.truth.favorites[uid] = set(favs)
        body = {"id": uid, "age": rng.randrange(16, 90), "favorite_categories": favs}
        ds.records.append(Out(ns.topic("users"), json.dumps(body).encode(), uid.encode()))

    def put_seller(sid: str) -> None:
        cats = rng.sample(CATEGORIES, rng.randrange(0, 4))
        ds.truth.categories[sid] = set(cats)
        body = json.dumps({"id": sid, "categories": cats}).encode()
        ds.records.append(Out(ns.topic("sellers"), body, sid.encode()))

    def delete(topic: str, table: dict[str, set[str]], eid: str) -> None:
        table.pop(eid, None)
        ds.records.append(Out(ns.topic(topic), None, eid.encode()))

    # 90% of users and sellers have a profile; the rest stay unknown.
    for uid in ds.user_ids:
        if rng.random() < 0.9 or uid == "123":
            put_user(uid)
    for sid in ds.seller_ids:
        if rng.random() < 0.9:
            put_seller(sid)

    sent: list[Out] = []
    bad_slots = {
        topic: sorted(rng.sample(range(n_interactions), bad_per_topic)) for topic in ds.bad
    }
    for i in range(n_interactions):
        if i == n_interactions // 2:  # mid-stream profile changes
            for uid in rng.sample(ds.user_ids, len(ds.user_ids) // 5):
                put_user(uid)
            for uid in rng.sample(ds.user_ids[1:], len(ds.user_ids) // 20):
                delete("users", ds.truth.favorites, uid)
            for sid in rng.sample(ds.seller_ids, len(ds.seller_ids) // 5):
                put_seller(sid)
            for sid in rng.sample(ds.seller_ids[5:], len(ds.seller_ids) // 20):
                delete("sellers", ds.truth.categories, sid)
        for topic, slots in bad_slots.items():
            if i in slots:
                _add_bad(ds, ns, topic, rng)
        if sent and rng.random() < 0.05:  # a producer retry: the same message again
            again = rng.choice(sent)
            ds.records.append(Out(again.topic, again.value, _key(rng, again), again.timestamp_ms))
            continue
        if i < 40:
            uid, sid = "123", rng.choice(EXAMPLE_SELLERS)
        elif hot_share and rng.random() < hot_share:
            uid, sid = rng.choice(HOT_PAIRS)
        else:
            uid = rng.choices(ds.user_ids, user_weights)[0]
            sid = rng.choices(ds.seller_ids, seller_weights)[0]
        kind = rng.choice(KINDS)
        iid = f"ix-{i}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
        body: dict[str, object] = {
            "id": iid,
            "user_id": uid,
            "seller_id": sid,
            "interaction_kind": kind,
        }
        timestamp_ms = None
        if rng.random() < 0.8:
            on = now - timedelta(seconds=rng.uniform(0, 60 * 86400))
            text = _iso(on, rng)
            body["on"] = text
            on = datetime.fromisoformat(text.replace("Z", "+00:00"))
            on = on if on.tzinfo else on.replace(tzinfo=UTC)
        else:  # no event time: the record timestamp (kept within the dedupe horizon)
            timestamp_ms = int(
                (now - timedelta(seconds=rng.uniform(0, 6 * 86400))).timestamp() * 1000
            )
            on = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        out = Out(ns.topic("interactions"), json.dumps(body).encode(), None, timestamp_ms)
        out.key = _key(rng, out, uid)
        ds.records.append(out)
        sent.append(out)
        assert ds.truth.interact(iid, uid, sid, kind, on)
        ds.counted_ids.append(iid)
    return ds


def _key(rng: random.Random, out: Out, uid: str | None = None) -> bytes | None:
    if uid is None:
        uid = json.loads(out.value or b"{}")["user_id"]
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.7:
        return uid.encode()
    return uuid.UUID(int=rng.getrandbits(128)).bytes  # not even UTF-8


def _add_bad(ds: DataSet, ns: Namespace, source: str, rng: random.Random) -> None:
    common = [
        b"not json at all",
        b"\xff\xfe\xfa binary",
        b"[1, 2, 3]",
        json.dumps({"id": ""}).encode(),
        json.dumps({"id": {"deep": [1, {"x": None}]}, "user_id": "u"}).encode(),
        b'{"id": "big", "pad": "' + b"z" * 70_000 + b'"}',
    ]
    specific = {
        "interactions": [
            json.dumps(
                {"id": "x", "user_id": 5, "seller_id": "s", "interaction_kind": "LIKE"}
            ).encode(),
            json.dumps(
                {
                    "id": "x",
                    "user_id": "u",
                    "seller_id": "s",
                    "interaction_kind": "LIKE",
                    "on": "not a time",
                }
            ).encode(),
            json.dumps({"id": "x", "user_id": "u", "seller_id": "s"}).encode(),
        ],
        "users": [
            json.dumps({"id": "user-1", "age": "old"}).encode(),
            json.dumps({"id": "user-2", "favorite_categories": "cat1"}).encode(),
        ],
        "sellers": [
            json.dumps({"id": "seller-1", "categories": [1, 2]}).encode(),
            json.dumps({"id": 7, "categories": []}).encode(),
        ],
    }
    choices = common + specific[source]
    value = rng.choice(choices)
    # Profile topics are compacted: the broker itself refuses records without a key.
    key = b"bad-key" if rng.random() < 0.5 or source != "interactions" else None
    out = Out(ns.topic(source), value, key)
    ds.records.append(out)
    ds.bad[source].append(out)
