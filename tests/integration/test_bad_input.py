"""Thousands of generated bad records among good ones: every bad one is dead-lettered with
its reason and original bytes, every good one is counted, and the worker never restarts."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamapp.core.models import DeadLetter
from tests.dataset import DataSet
from tests.harness import Namespace, Out, Worker, consume_all, produce, wait_until
from tests.integration.checks import assert_matches_truth, wait_for_total

pytestmark = pytest.mark.integration

FIELDS = ("id", "user_id", "seller_id", "interaction_kind")


def good(n: int) -> dict[str, str]:
    return {
        "id": f"g-{n}-{uuid.uuid4().hex[:6]}",
        "user_id": f"u{n % 37}",
        "seller_id": f"s{n % 11}",
        "interaction_kind": ["LIKE", "VIEW", "PURCHASE", "whatever"][n % 4],
    }


def not_a_json_object(raw: bytes) -> bool:
    """Independent oracle for random bytes: only a JSON object could ever be valid."""
    try:
        return not isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return True


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
garbage = st.recursive(
    scalars | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
non_string = (
    scalars
    | st.lists(garbage, max_size=3)
    | st.dictionaries(st.text(max_size=4), garbage, max_size=3)
)


@st.composite
def bad_interaction(draw: st.DrawFn) -> bytes:
    """A record that the contract says must be rejected; each branch is invalid by construction."""
    base = good(draw(st.integers(0, 10_000)))
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "not_object",
                "missing",
                "wrong_type",
                "empty_id",
                "control_char",
                "too_long",
                "bad_time",
                "oversize",
            ]
        )
    )
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=64).filter(not_a_json_object))
    if kind == "not_object":
        return json.dumps(
            draw(scalars | st.lists(garbage, max_size=3) | st.text(max_size=8))
        ).encode()
    field = draw(st.sampled_from(FIELDS))
    if kind == "missing":
        del base[field]
    elif kind == "wrong_type":
        base[field] = draw(
            non_string.filter(lambda v: v is not None or field != "interaction_kind")
        )
    elif kind == "empty_id":
        base[draw(st.sampled_from(FIELDS[:3]))] = ""
    elif kind == "control_char":
        base[draw(st.sampled_from(FIELDS[:3]))] = "a" + chr(draw(st.integers(0, 31))) + "b"
    elif kind == "too_long":
        base[draw(st.sampled_from(FIELDS[:3]))] = "x" * draw(st.integers(257, 2000))
    elif kind == "bad_time":
        base["on"] = draw(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=12)
            | st.integers()
            | st.lists(st.integers(), max_size=2)
        )
    else:
        base["pad"] = "p" * 70_000
    return json.dumps(base).encode()


def generate(strategy: st.SearchStrategy[bytes], count: int) -> list[bytes]:
    """`count` examples of `strategy`, drawn by hypothesis one per example (a list of
    thousands in one draw would overrun its buffer)."""
    out: list[bytes] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: bytes) -> None:
        out.append(value)

    collect()
    return out


def test_bad_records_are_contained(
    bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bad = generate(bad_interaction(), 2000)
    assert len(bad) >= 1500
    ns = Namespace(bootstrap)
    worker = Worker(ns, tmp_path_factory.mktemp("bad") / "data", "bad")
    try:
        worker.start()
        rng = random.Random(11)
        ds = DataSet()
        records: list[Out] = []
        now = datetime.now(UTC)
        bad_left = list(bad)
        for n in range(3000):
            body = good(n)
            body["on"] = (now - timedelta(hours=n % 500)).isoformat()
            records.append(
                Out(
                    ns.topic("interactions"),
                    json.dumps(body).encode(),
                    rng.choice([None, body["user_id"].encode(), b"k"]),
                )
            )
            ds.truth.interact(
                body["id"],
                body["user_id"],
                body["seller_id"],
                body["interaction_kind"],
                now - timedelta(hours=n % 500),
            )
            ds.counted_ids.append(body["id"])
            while bad_left and rng.random() < 0.7:
                records.append(
                    Out(
                        ns.topic("interactions"),
                        bad_left.pop(),
                        rng.choice([None, b"\xff\x00", b"k"]),
                    )
                )
        records += [Out(ns.topic("interactions"), b, None) for b in bad_left]
        produce(bootstrap, records)
        wait_for_total(worker, ds)
        assert_matches_truth(worker, ds)
        letters = consume_all(
            bootstrap,
            ns.topic("interactions-dlq"),
            ns.partitions,
            expect=len(bad),
            timeout=120,
            settle=3,
        )
        assert len(letters) == len(bad)
        parsed = [DeadLetter.model_validate_json(m.value) for m in letters]
        assert all(p.error for p in parsed)
        assert {tuple(m.headers) for m in letters} == {(("streamapp-format", b"DeadLetter/1"),)}
        # Each letter keeps its record's exact bytes (text or base64, whichever is smaller).
        assert not any(p.value_truncated for p in parsed)
        assert sorted(original(p.value, p.value_encoding) for p in parsed) == sorted(bad)
        assert worker.alive() and worker.starts == 1
    finally:
        worker.kill()


def original(text: str | None, encoding: str | None) -> bytes:
    assert text is not None
    return text.encode() if encoding == "utf-8" else base64.b64decode(text, validate=True)


EDGE_TIMES = [
    "9999-12-31T23:30:00-01:00",  # year 10000 once in UTC
    "0001-01-01T00:30:00+01:00",  # year 0 once in UTC
    "1969-12-31T23:59:59Z",
]


def test_calendar_edges_and_huge_letters_are_contained(
    bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 11 items 1 and 2: event times that leave the calendar in UTC are dead-lettered
    (they were counted, then crashed every later record of the pair and made its lookups
    500), and a record whose dead letter would be 6 MB once escaped is dead-lettered within
    the budget (it was lost: MessageSizeTooLargeError)."""
    ns = Namespace(bootstrap)
    worker = Worker(ns, tmp_path_factory.mktemp("edge") / "data", "edge")
    try:
        worker.start()
        now = datetime.now(UTC)
        topic = ns.topic("interactions")

        def interaction(n: int, on: str) -> Out:
            body = {"id": f"e{n}", "user_id": "edge", "seller_id": "s", "on": on}
            value = json.dumps({**body, "interaction_kind": "LIKE"}).encode()
            return Out(topic, value, f"k{n}".encode())

        good = [(now - timedelta(hours=n)).isoformat() for n in range(6)]
        huge = b"\x01" * 1_000_000
        records = [interaction(n, on) for n, on in enumerate(good[:3])]
        records += [interaction(10 + n, on) for n, on in enumerate(EDGE_TIMES)]
        records.append(Out(topic, huge, b"huge"))
        records += [interaction(3 + n, on) for n, on in enumerate(good[3:])]
        produce(bootstrap, records)
        letters = consume_all(
            bootstrap, ns.topic("interactions-dlq"), ns.partitions, expect=4, timeout=90
        )
        parsed = {m.key: DeadLetter.model_validate_json(m.value) for m in letters}
        assert len(letters) == 4, [p.error for p in parsed.values()]
        assert all(len(m.value) <= 512 * 1024 for m in letters)
        big = parsed.pop(b"huge")
        assert big.value_truncated and big.value_size == len(huge)
        assert big.value_sha256 == hashlib.sha256(huge).hexdigest()
        assert huge.startswith(original(big.value, big.value_encoding))
        assert sorted(json.loads(p.value or "")["on"] for p in parsed.values()) == sorted(
            EDGE_TIMES
        )
        assert all("1970-01-01" in p.error for p in parsed.values())

        def counted() -> dict:
            status, body = worker.get("/affinity/edge/s")
            assert status == 200, body
            return body if body["number_of_interactions"] == len(good) else {}

        vector = wait_until(counted, 60, what="the good interactions counted")
        assert vector["last_interaction_at"] == datetime.fromisoformat(good[0]).isoformat()
        bulk = worker.query([("edge", "s"), ("u0", "s0")])[0]
        assert bulk["number_of_interactions"] == len(good)
        assert bulk["last_interaction_at"] == vector["last_interaction_at"]
        assert worker.alive() and worker.starts == 1
    finally:
        worker.kill()
