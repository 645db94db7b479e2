"""The README's Quick start, as a new user runs it, on ports other than the defaults.

The port variables are exported once (one environment for every command): `make run`
starts the broker and the worker, the README's client block (loader, curl lookups, the
example query) runs as written, and `scripts/kafka-local.sh stop` stops that broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import ARTIFACTS, ROOT, LocalBroker, free_port, wait_until

pytestmark = pytest.mark.integration

MARKER = "<!-- quick-start-client"


@dataclass
class QuickStart:
    env: dict[str, str]  # the user's shell: the ports exported once
    log_path: Path
    proc: subprocess.Popen[bytes]  # `make run`


def readme_client_block() -> str:
    """The shell block of the Quick start that runs in 'another shell'."""
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match, "the Quick start's client block is missing"
    return match.group(1)


def bash(script: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_run(local_broker: LocalBroker, tmp_path: Path) -> Iterator[QuickStart]:
    """`make run` in its own process group with the ports exported; stopped by its PID."""
    if not (ROOT / ".venv" / "bin" / "faust").exists():
        pytest.skip("the Quick start uses .venv (created by `make run` / `make test`)")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "STREAMAPP_", "WEB_"))
    }
    # What the user exports once: the two ports. The data dir only keeps ./var untouched.
    env.update(
        KAFKA_LOCAL_PORT=str(local_broker.port),
        WEB_PORT=str(free_port()),
        STREAMAPP_DATA_DIR=str(tmp_path / "var"),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"quick-start-{local_broker.port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield QuickStart(env, log_path, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_quick_start_on_other_ports_exported_once(
    make_run: QuickStart, local_broker: LocalBroker, tmp_path: Path
) -> None:
    env = make_run.env
    url = f"http://127.0.0.1:{env['WEB_PORT']}"

    def healthy() -> bool:
        if make_run.proc.poll() is not None:
            raise AssertionError(make_run.log_path.read_text(errors="replace")[-3000:])
        return bash(f"curl -sf {url}/health", env, timeout=10).returncode == 0

    wait_until(healthy, 240, interval=1.0, what="make run: worker healthy")

    block = readme_client_block().replace("/tmp/", f"{tmp_path}/")
    lines = block.splitlines()
    first_curl = next(i for i, line in enumerate(lines) if line.startswith("curl"))
    load = bash("\n".join(lines[:first_curl]), env)
    assert load.returncode == 0, load.stderr
    assert load.stderr.startswith(
        f"streamapp-load: connecting to kafka://127.0.0.1:{local_broker.port} "
        "(from KAFKA_LOCAL_PORT), "
    )
    assert "streamapp-load: sent 4 lines, none rejected" in load.stderr.splitlines()

    def counted() -> bool:
        out = bash(f"curl -s {url}/affinity/123/456", env, timeout=10)
        return out.returncode == 0 and json.loads(out.stdout)["number_of_interactions"] == 2

    wait_until(counted, 60, interval=0.5, what="the loaded interactions counted")

    lookups = bash("\n".join(lines[first_curl:]), env)
    assert lookups.returncode == 0, lookups.stderr
    # curl prints no newline after the JSON: read the three answers one after the other.
    decoder, rest, answers = json.JSONDecoder(), lookups.stdout, []
    for _ in range(3):
        answer, end = decoder.raw_decode(rest)
        answers.append(answer)
        rest = rest[end:]
    single, bulk, top = answers
    assert single["number_of_interactions"] == 2
    assert [r["number_of_interactions"] for r in bulk["results"]] == [2, 0]
    assert top["sellers"][0]["seller_id"] == "456"
    example = [line.split() for line in rest.splitlines() if line.startswith("123")]
    assert example[0][:4] == ["123", "456", "true", "2"]  # the example query's first row

    # The README's way to stop the broker stops this one (same exported port).
    pid = local_broker.pid()
    assert pid is not None
    stopped = bash("scripts/kafka-local.sh stop", env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stderr
    assert not port_open(local_broker.port)
    assert not Path(f"/proc/{pid}").exists() or "kafka.Kafka" not in Path(
        f"/proc/{pid}/cmdline"
    ).read_text(errors="replace")
