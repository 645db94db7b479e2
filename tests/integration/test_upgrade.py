"""A rolling upgrade under load: workers of the previous release are replaced one at a time
by this one, on their data dirs and ports, while interactions stream in. Every stop is clean,
no worker exits unexpectedly, and every count and top-k is exact afterwards.

Lookups are polled throughout, but not held to exactness: the previous release answers
lookups during its own graceful stop from tables it has closed (0 interactions, or a 500
once its HTTP client is closed; fixed in this release, test_rolling_restart.py), also when
another worker forwards to it. Its answers are printed for the closing note.

The previous release is the tree of PREVIOUS (the tip of the last round, `git archive`d
from this repository's history) run with this checkout's virtualenv: it stores state format
2 (pair values this release reads as they are, and a seller index this one ignores) and
joins the group with dynamic membership, this one with static membership, so the group is
mixed while the upgrade runs.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import dataset
from tests.harness import ROOT, Namespace, produce, wait_until
from tests.integration.checks import assert_top_sellers_match_truth
from tests.integration.conftest import new_worker
from tests.integration.test_crash import Stream, interactions
from tests.integration.test_scale_out import Poller, wait_exact

pytestmark = pytest.mark.integration

PREVIOUS = "144948d"  # the release before static membership and versioned formats


def previous_release(into: Path) -> Path:
    into.mkdir(parents=True)
    try:
        archive = subprocess.run(
            ["git", "archive", PREVIOUS, "streamapp"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the previous release {PREVIOUS} is not in this clone's history ({exc})")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into


def test_a_rolling_upgrade_under_load_stays_exact(bootstrap: str, workers, tmp_path: Path) -> None:
    old_code = previous_release(tmp_path / "previous")
    ns = Namespace(bootstrap)
    ds = dataset.build(ns, n_users=150, n_sellers=80, n_interactions=2000, seed=51)
    old = []
    for name in ("w1", "w2"):
        worker = new_worker(workers, ns, tmp_path / name, f"{name}-old")
        worker.code = old_code
        old.append(worker.start(wait=False))
    for worker in old:
        worker.wait_ready(120)
    assert "group member" not in old[0].log_path.read_text()  # really the previous release
    produce(bootstrap, ds.records)
    wait_exact(old, ds, 120)

    stable = ds.pairs[:: max(1, len(ds.pairs) // 60)]
    poller = Poller(list(old), stable, {p: len(ds.truth.pairs[p]) for p in stable})
    poller.start()
    stream = Stream(bootstrap, interactions(ns, ds, 5000, seed=52), rate=800)
    stream.start()
    new = []
    for previous in old:
        time.sleep(2.0)
        assert previous.stop(signal.SIGTERM) == 0, previous.tail()  # a clean stop
        worker = new_worker(workers, ns, previous.data_dir, previous.name.replace("-old", ""))
        worker.port = previous.port  # the same address: a deploy replaces the process
        poller.workers.remove(previous)
        poller.workers.append(worker.start(wait=False))
        worker.wait_ready(120)
        new.append(worker)
    stream.join(120)
    assert stream.error is None
    wait_exact(new, ds, 180)
    poller.stop_event.set()
    poller.join(30)

    print(
        f"\nrolling upgrade from {PREVIOUS}: {poller.ok} exact answers, "
        f"{poller.unavailable} x 503, {len(poller.wrong)} wrong or 500 (the previous release "
        f"stopping): {poller.wrong[:3]}"
    )
    assert all(w.alive() and w.starts == 1 for w in new)
    wait_until(lambda: all(w.get("/health")[0] == 200 for w in new), 60, what="both ready")
    for worker in new:
        assert "group member" in worker.log_path.read_text()
        assert_top_sellers_match_truth(worker, ds, users=8, ks=(3, 1000))
