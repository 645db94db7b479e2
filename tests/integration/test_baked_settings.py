"""A half-life other than the one the stored state was built with is refused with one line
(worker and serving process): the stored decayed sums cannot be converted, and reading them
with another half-life made every score of a pair with two or more interactions wrong."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness import Namespace, Out, Server, Worker, produce, wait_until

pytestmark = pytest.mark.integration


NOW = datetime.now(UTC).replace(microsecond=0)
TIMES = [NOW - timedelta(hours=n) for n in range(3)]  # three VIEWs of u1 at s1


def interactions(ns: Namespace) -> list[Out]:
    bodies = [
        {"id": f"i{n}", "user_id": "u1", "seller_id": "s1", "interaction_kind": "VIEW"}
        | {"on": on.isoformat()}
        for n, on in enumerate(TIMES)
    ]
    return [Out(ns.topic("interactions"), json.dumps(b).encode(), key=b"u1") for b in bodies]


def truth_score(as_of: str, half_life_s: float) -> float:
    """VIEW weighs 1; no profiles, so no favorites bonus (contract.md)."""
    at = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    return sum(2 ** (-(at - on).total_seconds() / half_life_s) for on in TIMES)


def scored(worker: Worker) -> dict[str, object]:
    status, vector = worker.get("/affinity/u1/s1")
    assert status == 200, vector
    assert vector["number_of_interactions"] == 3
    assert vector["user_seller_score"] == pytest.approx(
        truth_score(vector["as_of"], 3600.0), rel=1e-9
    )
    return {k: v for k, v in vector.items() if k not in ("as_of", "user_seller_score")}


def refusal(variable_value: float, built: float, app_id: str) -> str:
    return (
        f"STREAMAPP_HALF_LIFE is {variable_value:g} s but the state of app {app_id!r} was "
        f"built with {built:g} s, and stored scores cannot be converted (they hold decayed "
        f"sums, not the events). Start with STREAMAPP_HALF_LIFE={built:g}s, or build the "
        "state again under a new app id (STREAMAPP_ID), which re-reads `interactions` as far "
        "back as the topic keeps it"
    )


def start_and_count(worker: Worker, ns: Namespace) -> None:
    """Start `worker` and wait until it counted the three interactions of u1/s1."""
    worker.start()
    produce(ns.bootstrap, interactions(ns))
    wait_until(
        lambda: worker.get("/affinity/u1/s1")[1].get("number_of_interactions") == 3,
        60,
        what="3 interactions counted",
    )


def exited(proc: Worker, timeout: float = 90.0) -> int:
    assert proc.proc is not None
    try:
        return proc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.name} did not exit:\n{proc.tail()}") from None


def test_another_half_life_is_refused_by_worker_and_serving_process(
    bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    ns = Namespace(bootstrap)
    worker = Worker(ns, tmp_path / "w", STREAMAPP_HALF_LIFE="1h")
    workers.append(worker)
    start_and_count(worker, ns)
    before = scored(worker)
    worker.stop()

    # The same data dir, and a fresh one (a new machine): the record lives in the broker.
    for name, data_dir in (("w2h", worker.data_dir), ("fresh2h", tmp_path / "fresh")):
        other = Worker(ns, data_dir, name, STREAMAPP_HALF_LIFE="2h")
        workers.append(other)
        other.start(wait=False)
        assert exited(other) == 2
        lines = [
            line
            for line in other.log_path.read_text().splitlines()
            if line.startswith("streamapp:")
        ]
        assert lines == [f"streamapp: {refusal(7200, 3600, ns.app_id)}"], other.tail()

    # A serving process beside the 1 h worker's data dir, with 2 h.
    server = Server(worker, STREAMAPP_HALF_LIFE="2h")
    workers.append(server)
    server.start(wait=False)
    assert exited(server, 30) == 2
    assert f"streamapp serve: {refusal(7200, 3600, ns.app_id)}" in server.log_path.read_text()

    # With the half-life it was built with, the state answers as before.
    worker.start()
    assert scored(worker) == before


def test_a_state_written_in_a_newer_format_is_refused_at_start(
    bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """A newer streamapp that writes another stored format records it in the app's epoch
    topic before writing; this version then refuses to start with one line (exit 2), a
    serving process too, instead of stopping on the first value it cannot read after every
    restart. Simulated by appending the newer version's record."""
    from streamapp.core.config import load_settings
    from streamapp.core.state_format import READABLE_STATE_FORMATS, STATE_FORMAT
    from streamapp.kafka.topic_catalog import TopicCatalog

    ns = Namespace(bootstrap)
    worker = Worker(ns, tmp_path / "w", "fmt")
    workers.append(worker)
    start_and_count(worker, ns)
    worker.stop()
    server = Server(worker)
    workers.append(server)
    epoch = TopicCatalog.of(load_settings(worker.env())).epoch
    newer = STATE_FORMAT + 1
    produce(bootstrap, [Out(epoch, str(newer).encode(), b"state_format", partition=0)])

    worker.start(wait=False)
    assert exited(worker) == 2
    lines = [
        line for line in worker.log_path.read_text().splitlines() if line.startswith("streamapp:")
    ]
    reads = ", ".join(str(f) for f in sorted(READABLE_STATE_FORMATS))
    line = (
        f"the state of app {ns.app_id!r} is written in format {newer} by a newer streamapp, and "
        f"this version reads format {reads}: run the newer version on this worker "
        "too (README: Upgrades)"
    )
    assert lines[-1] == f"streamapp: {line}", worker.tail()
    # The serving process reads what its worker last checked: the older format, so it
    # starts; it refuses once the data dir says the newer one.
    local = json.loads((worker.data_dir / "state-settings.json").read_text())
    assert local["state_format"] == STATE_FORMAT
    local["state_format"] = newer
    (worker.data_dir / "state-settings.json").write_text(json.dumps(local))
    server.start(wait=False)
    assert exited(server, 30) == 2
    assert f"streamapp serve: {line}" in server.log_path.read_text()
