"""docker-compose.yml stays valid (checked without a Docker engine)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.harness import ROOT


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)"
        )
    # The defaults, whatever ports the person running the tests has exported.
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_LOCAL_PORT", "WEB_PORT")}
    out = subprocess.run(
        [*command, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "streamapp.app" in (ROOT / "Dockerfile").read_text()
    for service in ("kafka:", "worker-1:", "worker-2:", "loader:"):
        assert service in out.stdout
    # Routing between containers needs each worker's own canonical URL.
    assert "http://worker-1:6066" in out.stdout and "http://worker-2:6066" in out.stdout

    # Host clients (the README's loader) reach Kafka through its published EXTERNAL listener,
    # on the same port variable as the local broker.
    assert "127.0.0.1:9092:9094" in out.stdout
    assert "EXTERNAL://127.0.0.1:9092" in out.stdout
    moved = subprocess.run(
        [*command, "config"],
        cwd=ROOT,
        env={**env, "KAFKA_LOCAL_PORT": "47092", "WEB_PORT": "46066"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert moved.returncode == 0, moved.stderr
    assert "127.0.0.1:47092:9094" in moved.stdout and "127.0.0.1:46066:6066" in moved.stdout


def test_docker_build_context_leaves_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".kafka", "var", "test-artifacts", ".git"} <= ignored
