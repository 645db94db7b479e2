"""Start-up problems are one clear line and a non-zero exit, not a traceback wall."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.harness import ROOT, Namespace, Worker, free_port

pytestmark = pytest.mark.integration


def run_worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMAPP_", "KAFKA_"))}
    full.update({"STREAMAPP_DATA_DIR": str(tmp_path), "WEB_PORT": str(free_port()), **env})
    return subprocess.run(
        [sys.executable, "-m", "faust", "-A", "streamapp.app", "worker"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"KAFKA_BROKER": "kafka://127.0.0.1:1"},
            "streamapp: cannot reach the Kafka broker kafka://127.0.0.1:1 (KAFKA_BROKER): "
            "127.0.0.1:1: connection refused. Start that broker or correct "
            "KAFKA_BROKER.",
        ),
        (
            # `make run` without KAFKA_BROKER: the address comes from the local broker's port.
            {"KAFKA_LOCAL_PORT": "1"},
            "streamapp: cannot reach the Kafka broker kafka://127.0.0.1:1 (from "
            "KAFKA_LOCAL_PORT=1): 127.0.0.1:1: connection refused. Start it "
            "with `KAFKA_LOCAL_PORT=1 scripts/kafka-local.sh start` or set KAFKA_BROKER.",
        ),
    ],
)
def test_unreachable_broker(tmp_path: Path, env: dict[str, str], line: str) -> None:
    out = run_worker(tmp_path, STREAMAPP_BROKER_WAIT="1s", **env)
    assert out.returncode == 2
    said = [text for text in out.stderr.splitlines() if text.startswith("streamapp:")]
    assert said == [line]
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"STREAMAPP_PARTITIONS": "many"},
            "STREAMAPP_PARTITIONS='many' must be a whole number from 1 to 1024",
        ),
        ({"WEB_PORT": "0"}, "WEB_PORT='0' is out of range: use 1 to 65535"),
        ({"KAFKA_BROKER": "kafka://"}, "KAFKA_BROKER='kafka://' is invalid"),
    ],
)
def test_bad_setting(tmp_path: Path, env: dict[str, str], message: str) -> None:
    out = run_worker(tmp_path, **env)
    assert out.returncode == 2
    assert (
        out.stderr.strip().splitlines()[-1].startswith(f"streamapp: configuration error: {message}")
    )
    assert "Traceback" not in out.stderr


def test_refused_start_creates_no_topic_and_says_how_out(bootstrap: str, tmp_path: Path) -> None:
    """A user's profile and pairs must share a partition; a mismatch would silently split them.
    The refusal comes before anything is created (half-created topics used to make every
    later start fail too), and the command it prints gets the user out."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    app_id = prefix.rstrip("-")

    async def topics() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return {t for t in await admin.list_topics() if prefix in t or app_id in t}
        finally:
            await admin.close()

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"{prefix}users", 3, 1)])
        finally:
            await admin.close()

    asyncio.run(create())
    env = {
        "KAFKA_BROKER": f"kafka://{bootstrap}",
        "STREAMAPP_ID": app_id,
        "STREAMAPP_TOPIC_PREFIX": prefix,
    }
    out = run_worker(tmp_path, **env)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("streamapp:")]
    python = sys.executable  # what the message shows for an interpreter outside the checkout
    with contextlib.suppress(ValueError):
        python = str(Path(sys.executable).relative_to(ROOT))
    delete = f"{python} -m streamapp.admin delete-topics {prefix}users"
    assert lines == [
        f"streamapp: topics must have STREAMAPP_PARTITIONS=8 partitions, but {prefix}users "
        "has 3 (nothing was created). To use them, start again with STREAMAPP_PARTITIONS=3; "
        f"to start over with 8 partitions, delete them first (their data is lost): {delete}"
    ]
    assert asyncio.run(topics()) == {f"{prefix}users"}

    # The printed way out works as printed, with the same environment.
    full = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMAPP_", "KAFKA_"))}
    done = subprocess.run(
        shlex.split(delete),
        cwd=ROOT,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert asyncio.run(topics()) == set()


def test_cursor_is_shown_again_after_a_fatal_start_up_error(tmp_path: Path) -> None:
    """faust's spinner hides the cursor in a terminal; a refused start must show it again."""
    import pty

    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMAPP_", "KAFKA_"))}
    env.update(
        KAFKA_BROKER="kafka://127.0.0.1:1",
        STREAMAPP_BROKER_WAIT="1s",
        STREAMAPP_DATA_DIR=str(tmp_path),
        WEB_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "streamapp.app", "worker"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    output = b""
    try:
        while True:  # until the process closes the terminal (bounded by the wait below)
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer has exited
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(controller)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    assert proc.returncode == 2
    hidden, shown = output.rfind(b"\x1b[?25l"), output.rfind(b"\x1b[?25h")
    assert shown > hidden, output[-500:]


def test_fausts_datadir_option_places_the_state(
    bootstrap: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """`faust -A streamapp.app --datadir D worker --web-port P`: the state goes to D, not to
    STREAMAPP_DATA_DIR, and the worker is at P (faust imports the app before it reads its
    options; --datadir was once ignored without a word)."""

    class WithDatadir(Worker):
        def command(self) -> list[str]:
            faust = [sys.executable, "-m", "faust", "-A", "streamapp.app"]
            given = ["--datadir", str(tmp_path / "given"), "worker", "--web-port", str(self.port)]
            return [*faust, *given, "-l", "info"]

        def env(self) -> dict[str, str]:
            return {**super().env(), "WEB_PORT": str(free_port())}  # beaten by --web-port

    worker = WithDatadir(Namespace(bootstrap), tmp_path / "from-env")
    workers.append(worker)
    worker.start()  # ready at --web-port
    assert worker.get("/health")[0] == 200
    assert (tmp_path / "given" / "topics-epoch").is_file()
    assert any((tmp_path / "given").rglob("CURRENT"))  # the tables' RocksDB databases
    assert not (tmp_path / "from-env").exists()
