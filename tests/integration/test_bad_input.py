"""Thousands of generated bad records among good ones: every bad one is dead-lettered with
its reason and original bytes, every good one is counted, and the worker never restarts."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamapp.models import DeadLetter
from tests.dataset import DataSet
from tests.harness import Namespace, Out, Worker, consume_all, produce
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
        by_value = sorted((p.value or "", p.value_encoding or "") for p in parsed)
        want = sorted(
            (b.decode(), "utf-8") if _utf8(b) else (base64.b64encode(b).decode(), "base64")
            for b in bad
        )
        assert by_value == want
        assert worker.alive() and worker.starts == 1
    finally:
        worker.kill()


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
