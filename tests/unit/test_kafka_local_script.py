"""scripts/kafka-local.sh start/stop with a stand-in for `java`: what the script says on
a fresh start and on a restart that keeps the data (no JVM, no Kafka jars needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port

SCRIPT = ROOT / "scripts" / "kafka-local.sh"

# A fake broker: listens on the client port of server.properties and logs the ready line
# the script waits for. Its command line holds "kafka.Kafka", as the script's PID check wants.
FAKE_BROKER = """
import re, socket, sys
props, log_dir = sys.argv[2], sys.argv[3]
port = int(re.search(r"^listeners=PLAINTEXT://127.0.0.1:(\\d+)", open(props).read(), re.M)[1])
server = socket.create_server(("127.0.0.1", port))
with open(f"{log_dir}/server.log", "a") as log:
    log.write("[KafkaRaftServer nodeId=1] Kafka Server started\\n")
while True:
    server.accept()[0].close()
"""

# `java` for the script's two uses: StorageTool format (writes meta.properties the first
# time, as Kafka does; --ignore-formatted leaves it alone after) and the broker itself.
FAKE_JAVA = f"""#!/usr/bin/env bash
set -euo pipefail
args=("$@")
for ((i = 0; i < ${{#args[@]}}; i++)); do
    case "${{args[i]}}" in
        -c) props="${{args[i + 1]}}" ;;
        -Dkafka.logs.dir=*) logs="${{args[i]#-Dkafka.logs.dir=}}" ;;
        kafka.Kafka)
            exec "{sys.executable}" -c '{FAKE_BROKER}' kafka.Kafka "${{args[i + 1]}}" "$logs" ;;
    esac
done
data="$(sed -n 's/^log.dirs=//p' "$props")"
mkdir -p "$data"
[[ -f "$data/meta.properties" ]] || echo "cluster.id=test" >"$data/meta.properties"
"""


@pytest.fixture
def local_script(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of kafka-local.sh with the fake java, a state folder of its own and
    free ports; the fake broker is stopped (by the script, by its PID) at the end."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(FAKE_JAVA)
    java.chmod(0o755)
    state = tmp_path / "state"
    (state / "jars").mkdir(parents=True)
    (state / "jars" / ".complete").write_text("test\n")  # no Maven fetch
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KAFKA_LOCAL_DIR": str(state),
        "KAFKA_LOCAL_PORT": str(free_port()),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(free_port()),
        "KAFKA_LOCAL_TIMEOUT": "20",
    }
    env.pop("KAFKA_LOCAL_FRESH", None)
    try:
        yield env
    finally:
        run(env, "stop")


def run(env: dict[str, str], action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=60
    )


def test_storage_is_said_to_be_formatted_only_when_it_is(local_script: dict[str, str]) -> None:
    port = local_script["KAFKA_LOCAL_PORT"]
    data_dir = Path(local_script["KAFKA_LOCAL_DIR"]) / f"data-{port}"
    formatting = f"kafka-local: formatting storage in {data_dir} (cluster id "

    first = run(local_script, "start")
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"127.0.0.1:{port}\n"
    assert formatting in first.stderr
    assert (data_dir / "meta.properties").is_file()

    assert run(local_script, "stop").returncode == 0
    again = run(local_script, "start")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"127.0.0.1:{port}\n"
    assert "formatting storage" not in again.stderr
    assert f"kafka-local: starting broker on 127.0.0.1:{port}" in again.stderr
