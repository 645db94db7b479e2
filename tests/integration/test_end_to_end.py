"""The whole product against a real broker: generated data in, exact features out."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from streamapp.core.models import AffinityUpdate, DeadLetter
from tests import dataset
from tests.harness import ROOT, Namespace, Worker, consume_all, produce
from tests.integration.checks import (
    assert_matches_truth,
    assert_top_sellers_match_truth,
    eventually_matches_truth,
    wait_for_total,
)
from tests.truth import assert_vector_equal, parse_time

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def loaded(
    bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Namespace, dataset.DataSet, Worker]]:
    ns = Namespace(bootstrap)
    ds = dataset.build(ns)
    worker = Worker(ns, tmp_path_factory.mktemp("data") / "w1", "main")
    try:
        worker.start()
        produce(bootstrap, ds.records)
        wait_for_total(worker, ds)
        eventually_matches_truth(worker, ds)
        yield ns, ds, worker
    finally:
        worker.kill()


def test_every_pair_matches_the_ground_truth(loaded) -> None:
    _ns, ds, worker = loaded
    unknown = [("123", "nobody"), ("nobody", "456"), ("ghost-user", "ghost-seller")]
    checked = assert_matches_truth(worker, ds, unknown)
    assert checked == len(ds.pairs) + 3
    assert len(ds.pairs) > 500 and ds.total > 3000  # the data set is as large as intended


def test_single_lookup_equals_the_truth(loaded) -> None:
    _ns, ds, worker = loaded
    for user, seller in [*ds.pairs[:: max(1, len(ds.pairs) // 40)], ("123", "456")]:
        status, got = worker.get(f"/affinity/{user}/{seller}")
        assert status == 200
        assert_vector_equal(got, ds.truth.vector(user, seller, parse_time(got["as_of"])))


def test_bulk_keeps_order_and_duplicates(loaded) -> None:
    _ns, ds, worker = loaded
    pairs = [("123", s) for s in dataset.EXAMPLE_SELLERS] + [("nobody", "456"), ("123", "456")]
    results = worker.query(pairs)
    assert [(r["user_id"], r["seller_id"]) for r in results] == pairs
    assert len({r["as_of"] for r in results}) == 1  # one moment for the whole answer
    for (user, seller), got in zip(pairs, results, strict=True):
        assert_vector_equal(got, ds.truth.vector(user, seller, parse_time(got["as_of"])))
    assert results[0] == results[4] == results[8]


def test_top_sellers_equal_the_ground_truth_ranking(loaded) -> None:
    _ns, ds, worker = loaded
    assert_top_sellers_match_truth(worker, ds)


def test_profiles(loaded) -> None:
    _ns, ds, worker = loaded
    for uid in ds.user_ids[:60]:
        status, body = worker.get(f"/users/{uid}")
        if uid in ds.truth.favorites:
            assert status == 200 and body["id"] == uid
            assert set(body["favorite_categories"]) == ds.truth.favorites[uid]
        else:
            assert status == 404 and body == {"error": f"unknown user: {uid}"}
    for sid in ds.seller_ids[:60]:
        status, body = worker.get(f"/sellers/{sid}")
        if sid in ds.truth.categories:
            assert status == 200 and set(body["categories"]) == ds.truth.categories[sid]
        else:
            assert status == 404 and "unknown seller" in body["error"]


def read_updates(ns: Namespace) -> list:
    """Every affinity update so far (until none arrived for 3 s)."""
    return consume_all(
        ns.bootstrap, ns.topic("affinity-updates"), ns.partitions, expect=1, timeout=30, settle=3
    )


def test_affinity_updates_cover_every_counted_interaction_once(loaded) -> None:
    """Coalesced (the default): at most one update per pair per batch; together they cover
    each counted interaction exactly once, and the last one of each pair is its vector."""
    ns, ds, worker = loaded
    records = read_updates(ns)
    updates = [AffinityUpdate.model_validate_json(r.value) for r in records]
    assert sum(u.interactions_covered for u in updates) == ds.total
    listed = [i for u in updates if u.interaction_ids is not None for i in u.interaction_ids]
    assert len(listed) == len(set(listed)) and set(listed) <= set(ds.counted_ids)
    assert all(
        u.interaction_ids is None or len(u.interaction_ids) == u.interactions_covered
        for u in updates
    )
    assert len(updates) < ds.total  # coalesced: a batch publishes each touched pair once
    assert all(r.key == u.user_id.encode() for r, u in zip(records, updates, strict=True))
    # In the partition Kafka's default partitioner gives the user id, as any producer keying
    # by user would: a consumer sees each user's updates in order, in one partition.
    aiokafka_partition = {r.key: (murmur2(r.key) & 0x7FFFFFFF) % ns.partitions for r in records}
    assert all(r.partition == aiokafka_partition[r.key] for r in records)
    # Each names its format, for consumers that must tell versions apart.
    assert {tuple(r.headers) for r in records} == {(("streamapp-format", b"AffinityUpdate/1"),)}
    last: dict[tuple[str, str], AffinityUpdate] = {}
    for u in updates:  # per key, topic order is processing order
        last[(u.user_id, u.seller_id)] = u
    assert set(last) == set(ds.truth.pairs)
    for pair, u in last.items():
        want = ds.truth.vector(*pair, u.as_of)
        got = json.loads(u.model_dump_json())
        names = (
            "id",
            "number_of_interactions",
            "interactions_by_kind",
            "first_interaction_at",
            "last_interaction_at",
        )
        assert_vector_equal(got, {name: want[name] for name in names})
    _status, text = worker.get("/metrics")
    assert metric(text, "streamapp_affinity_updates_total") == len(updates)


def test_dead_letters_hold_every_bad_record(loaded) -> None:
    ns, ds, worker = loaded
    for source, bad in ds.bad.items():
        records = consume_all(
            ns.bootstrap,
            ns.topic(f"{source}-dlq"),
            ns.partitions,
            expect=len(bad),
            timeout=20,
            settle=2,
        )
        letters = [DeadLetter.model_validate_json(r.value) for r in records]
        assert len(letters) == len(bad), source
        assert all(letter.error and letter.topic == ns.topic(source) for letter in letters)

        def original(letter: DeadLetter) -> bytes | None:
            if letter.value is None:
                return None
            if letter.value_encoding == "base64":
                return base64.b64decode(letter.value)
            return letter.value.encode()

        assert sorted(original(x) or b"" for x in letters) == sorted(b.value or b"" for b in bad)
        assert all(
            letter.offset >= 0 and 0 <= letter.partition < ns.partitions for letter in letters
        )
    assert worker.alive() and worker.starts == 1  # bad input never stopped the worker


def test_http_errors_are_json_4xx(loaded) -> None:
    _ns, _ds, worker = loaded
    cases = [
        ("GET", "/nope", None, 404),
        ("GET", "/users/123/top-sellers?k=0", None, 400),
        ("GET", "/users/123/top-sellers?k=abc", None, 400),
        ("GET", "/affinity/" + "x" * 300 + "/456", None, 400),
        ("POST", "/affinity/query", b"not json", 400),
        ("POST", "/affinity/query", b'{"pairs": [{"user_id": 1, "seller_id": "2"}]}', 400),
        ("POST", "/affinity/query", b'{"pairs": "x"}', 400),
        ("POST", "/affinity/query", b"{}", 400),
        (
            "POST",
            "/affinity/query",
            json.dumps({"pairs": [{"user_id": "u", "seller_id": "s"}] * 1001}).encode(),
            413,
        ),
        ("POST", "/affinity/query", b"[" * 7_000_000, 413),  # over 1,000 pairs' longest
        ("DELETE", "/affinity/query", None, 405),
    ]
    for method, path, raw, want in cases:
        status, body = worker.request(method, path, raw=raw)
        assert status == want, (method, path, status, body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body


def test_a_bulk_query_within_the_pair_limit_is_read_however_long_its_ids(loaded) -> None:
    """1,000 pairs (the default limit) of 256-character ids, every character a JSON escape,
    and beyond U+FFFF a pair of them: a body of 6 MB, which a fixed 1 MiB limit refused with
    413."""
    _ns, _ds, worker = loaded
    pairs = [
        {"user_id": chr(0x1F600 + n % 50) * 256, "seller_id": chr(0x20000 + n) * 256}
        for n in range(1_000)
    ]
    raw = json.dumps({"pairs": pairs}, ensure_ascii=True).encode()
    assert len(raw) > 6_000_000
    status, body = worker.request("POST", "/affinity/query", raw=raw)
    assert status == 200, (status, str(body)[:300])
    got = [(r["user_id"], r["seller_id"], r["number_of_interactions"]) for r in body["results"]]
    assert got == [(p["user_id"], p["seller_id"], 0) for p in pairs]


def test_example_query_script(loaded) -> None:
    _ns, ds, worker = loaded
    out = subprocess.run(
        [sys.executable, "examples/example_query.py"],
        cwd=ROOT,
        env={**os.environ, "STREAMAPP_URL": worker.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:] if line.strip()]
    assert [r[1] for r in rows] == dataset.EXAMPLE_SELLERS
    for row in rows:
        want = ds.truth.vector("123", row[1], parse_time("2030-01-01T00:00:00+00:00"))
        assert row[0] == "123"
        assert row[2] == str(want["favorites_match"]).lower()
        assert int(row[3]) == want["number_of_interactions"]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {want}")


def test_metrics_agree_with_what_was_sent(loaded) -> None:
    ns, ds, worker = loaded
    status, text = worker.get("/metrics")
    assert status == 200 and isinstance(text, str)
    retries = (
        sum(1 for r in ds.records if r.topic == ns.topic("interactions") and r.value) - ds.total
    )
    retries -= len(ds.bad["interactions"])
    assert metric(text, "streamapp_interactions_counted_total") == ds.total
    assert metric(text, "streamapp_interactions_duplicate_total") == retries
    for source, bad in ds.bad.items():
        assert metric(text, "streamapp_dead_letters_total", source=source) == len(bad)
    assert metric(text, "streamapp_ready") == 1
    lag = [line for line in text.splitlines() if line.startswith("streamapp_consumer_lag{")]
    assert len(lag) >= 4 * ns.partitions and all(line.endswith(" 0.0") for line in lag)
    assert (
        'streamapp_http_request_duration_seconds_count{endpoint="/affinity/query",status="200"}'
        in text
    )


def test_openapi_is_served(loaded) -> None:
    from streamapp.core.config import load_settings
    from streamapp.http.openapi import build

    _ns, _ds, worker = loaded
    status, body = worker.get("/openapi.json")
    assert status == 200
    assert body == json.loads(json.dumps(build(load_settings({}))))


# Last: it restarts the shared worker (and resets its metrics).
def test_restart_keeps_exact_state(loaded, tmp_path: Path) -> None:
    """Same data dir (RocksDB + changelog tail), then an empty one (changelog only)."""
    ns, ds, worker = loaded
    before = len(read_updates(ns))
    assert worker.stop() == 0  # SIGTERM is a clean stop
    worker.start()
    assert_matches_truth(worker, ds)
    worker.stop()
    worker.data_dir = tmp_path / "empty"
    worker.start()
    assert_matches_truth(worker, ds)
    # Restarts replayed nothing that had been committed, so published nothing again.
    assert len(read_updates(ns)) == before


def test_large_bulk_body_arriving_in_pieces(loaded) -> None:
    """A body that reaches the server over several reads is read whole (it was cut at the
    first read's end: 'EOF while parsing' for a bulk query of long ids)."""
    import socket
    import time as _time

    _ns, _ds, worker = loaded
    pairs = [
        {"user_id": f"{i}".ljust(256, "u"), "seller_id": "s".ljust(256, "s")} for i in range(900)
    ]
    body = json.dumps({"pairs": pairs}).encode()
    head = (
        f"POST /affinity/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", worker.port), timeout=30) as sock:
        sock.sendall(head)
        third = len(body) // 3
        for start in range(0, len(body), third):
            sock.sendall(body[start : start + third])
            _time.sleep(0.2)  # the server has read what arrived before the rest comes
        answer = b""
        while chunk := sock.recv(1 << 16):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 200 " in status_line, answer[:300]
    payload = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert len(payload["results"]) == 900
    assert all(r["number_of_interactions"] == 0 for r in payload["results"])
