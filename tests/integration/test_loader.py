"""The bulk loader: JSON Lines files in, exact features out, bad lines reported."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.dataset import DataSet
from tests.harness import ROOT, Namespace, consume_all, free_port
from tests.integration.checks import assert_matches_truth, wait_for_total
from tests.integration.conftest import new_worker

pytestmark = pytest.mark.integration


def test_loader_sends_valid_lines_and_reports_the_rest(
    bootstrap: str, workers, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    rng = random.Random(3)
    now = datetime.now(UTC)
    ds = DataSet()
    users, sellers, interactions = [], [], []
    for i in range(40):
        favs = rng.sample(["a", "b", "c", "d"], rng.randrange(3))
        users.append({"id": f"u{i}", "age": 20 + i, "favorite_categories": favs})
        ds.truth.favorites[f"u{i}"] = set(favs)
    for i in range(25):
        cats = rng.sample(["a", "b", "c", "d"], rng.randrange(3))
        sellers.append({"id": f"s{i}", "categories": cats})
        ds.truth.categories[f"s{i}"] = set(cats)
    for i in range(1500):
        on = now - timedelta(seconds=rng.uniform(0, 40 * 86400))
        body = {
            "id": f"i{i}",
            "user_id": f"u{rng.randrange(40)}",
            "seller_id": f"s{rng.randrange(25)}",
            "interaction_kind": rng.choice(["LIKE", "VIEW", "PURCHASE", "share"]),
            "on": on.isoformat(),
        }
        interactions.append(body)
        ds.truth.interact(
            body["id"], body["user_id"], body["seller_id"], body["interaction_kind"], on
        )
        ds.counted_ids.append(body["id"])

    def write(name: str, rows: list[dict], bad: list[str]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        lines = [json.dumps(r) for r in rows]
        for n, line in enumerate(bad):
            lines.insert(7 * (n + 1), line)
        path.write_text("\n".join(lines) + "\n\n")
        return path

    files = {
        "users": write("users", users, ['{"id": "u-bad", "age": "x"}']),
        "sellers": write("sellers", sellers, []),
        "interactions": write(
            "interactions",
            interactions,
            ["not json", '{"id": "", "user_id": "u1"}', '{"id": "z", "user_id": "u1"}'],
        ),
    }
    # The data dir's parent does not exist yet, as ./var on a clean checkout.
    worker = new_worker(workers, ns, tmp_path / "var" / "loader").start()
    args = [f"--{name}={path}" for name, path in files.items()]
    rejects_path = tmp_path / "rejects.jsonl"
    out = subprocess.run(
        [sys.executable, "-m", "streamapp.loader", *args, f"--rejects={rejects_path}"],
        cwd=ROOT,
        env=ns.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Rejected lines make the exit status non-zero (a partial load is not a success)...
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"streamapp-load: connecting to kafka://{bootstrap} ")
    assert out.stderr.splitlines()[-1] == (
        "streamapp-load: partial load: sent 1565 lines, rejected 4 (each with its reason in "
        f"{rejects_path}); exit status 1, --allow-rejects makes it 0"
    )
    # ...and the summary names the field to fix, not just pydantic's message, and the line.
    reasons = out.stdout.splitlines()
    missing = "seller_id: Field required; interaction_kind: Field required"
    assert f"  1 x interactions: {missing} (line 22)" in reasons
    assert "  1 x users: age: Input should be a valid integer (line 8)" in reasons
    assert "  1 x interactions: not valid JSON: expected ident at column 2 (line 8)" in reasons
    table = {
        line.split()[0]: line.split()[1:]
        for line in out.stdout.splitlines()[1:]
        if not line.startswith(" ")
    }
    assert table == {"users": ["40", "1"], "sellers": ["25", "0"], "interactions": ["1500", "3"]}
    rejects = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    assert sorted((r["source"], r["line"], r["value"]) for r in rejects) == sorted(
        [
            ("users", 8, '{"id": "u-bad", "age": "x"}'),
            ("interactions", 8, "not json"),
            ("interactions", 15, '{"id": "", "user_id": "u1"}'),
            ("interactions", 22, '{"id": "z", "user_id": "u1"}'),
        ]
    )
    assert all(r["error"] for r in rejects)
    wait_for_total(worker, ds)
    assert_matches_truth(worker, ds)


def create_topic(bootstrap: str, topic: NewTopic) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([topic])
        finally:
            await admin.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_loader_sends_the_valid_lines_of_a_mixed_file_and_says_so(
    bootstrap: str, tmp_path: Path
) -> None:
    ns = Namespace(bootstrap)
    topic = ns.topic("interactions")
    create_topic(bootstrap, NewTopic(topic, 2, 1))
    valid = [
        json.dumps(
            {"id": f"i{n}", "user_id": f"u{n % 3}", "seller_id": "s1", "interaction_kind": "LIKE"}
        )
        for n in range(5)
    ]
    lines = [valid[0], "not json", valid[1], "", valid[2], '{"id": "i9"}', valid[3], valid[4]]
    lines.append('{"id": "i8", "user_id": "u1",}')
    path = tmp_path / "interactions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "streamapp.loader", f"--interactions={path}", "--no-progress"]
    out = subprocess.run(
        command, cwd=ROOT, env=ns.env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        f"streamapp-load: connecting to kafka://{bootstrap} (from KAFKA_BROKER), "
        f"topic prefix '{ns.prefix}', waiting up to 15s",
        "streamapp-load: partial load: sent 5 lines, rejected 3 (the most common reasons above; "
        "--rejects FILE lists every one); exit status 1, --allow-rejects makes it 0",
    ]
    assert out.stdout.splitlines() == [
        "source              sent  rejected",
        "interactions           5         3",
        "  1 x interactions: not valid JSON: expected ident at column 2 (line 2)",
        "  1 x interactions: user_id: Field required; seller_id: Field required; "
        "interaction_kind: Field required (line 6)",
        "  1 x interactions: not valid JSON: trailing comma at column 30 (line 9)",
    ]
    records = consume_all(bootstrap, topic, 2, expect=5, settle=1)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (json.loads(v)["user_id"].encode(), v.encode()) for v in valid
    )


def test_loader_unreachable_broker_is_one_quick_line(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text('{"id": "u1"}\n')
    port = free_port()  # nothing listens there
    env = {
        **Namespace(f"127.0.0.1:{port}").env(),
        "STREAMAPP_BROKER_WAIT": "1s",
    }
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "streamapp.loader", f"--users={path}", "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Python's start-up and imports take most of this on a busy machine; the wait is 1 s.
    assert time.monotonic() - started < 30
    assert out.returncode == 4, out.stderr
    assert out.stdout == ""
    connecting, failure = out.stderr.splitlines()
    assert connecting.startswith(
        f"streamapp-load: connecting to kafka://127.0.0.1:{port} (from KAFKA_BROKER), "
    )
    assert connecting.endswith(", waiting up to 1s")
    assert failure.startswith(
        f"streamapp-load: cannot reach the Kafka broker kafka://127.0.0.1:{port} "
        f"(KAFKA_BROKER): 127.0.0.1:{port}: "
    )
    assert failure.endswith("; nothing was sent. Start that broker or correct KAFKA_BROKER.")
