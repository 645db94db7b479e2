"""The bulk loader: JSON Lines files in, exact features out, bad lines reported."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.dataset import DataSet
from tests.harness import ROOT, Namespace
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
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamapp.loader",
            *args,
            f"--rejects={tmp_path / 'rejects.jsonl'}",
        ],
        cwd=ROOT,
        env=ns.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Rejected lines make the exit status non-zero (a partial load is not a success)...
    assert out.returncode == 1, out.stderr
    assert f"streamapp-load: writing to kafka://{bootstrap}" in out.stderr
    assert "4 line(s) rejected" in out.stderr
    # ...and the summary names the field to fix, not just pydantic's message.
    reasons = out.stdout.splitlines()
    missing = "seller_id: Field required; interaction_kind: Field required"
    assert f"  1 x interactions: {missing}" in reasons
    assert "  1 x users: age: Input should be a valid integer" in reasons
    table = {
        line.split()[0]: line.split()[1:]
        for line in out.stdout.splitlines()[1:]
        if not line.startswith(" ")
    }
    assert table == {"users": ["40", "1"], "sellers": ["25", "0"], "interactions": ["1500", "3"]}
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert sorted((r["source"], r["value"]) for r in rejects) == sorted(
        [
            ("users", '{"id": "u-bad", "age": "x"}'),
            ("interactions", "not json"),
            ("interactions", '{"id": "", "user_id": "u1"}'),
            ("interactions", '{"id": "z", "user_id": "u1"}'),
        ]
    )
    assert all(r["error"] and r["line"] > 0 for r in rejects)
    wait_for_total(worker, ds)
    assert_matches_truth(worker, ds)


def test_loader_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text('{"id": "u1"}\n')
    env = {**os.environ, "KAFKA_BROKER": "kafka://127.0.0.1:1", "STREAMAPP_BROKER_WAIT": "1s"}
    out = subprocess.run(
        [sys.executable, "-m", "streamapp.loader", f"--users={path}", "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith(
        "streamapp-load: cannot reach the broker kafka://127.0.0.1:1"
    )
    assert len(out.stderr.strip().splitlines()) == 1
