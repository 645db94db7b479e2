"""docker-compose.yml stays valid (checked without a Docker engine)."""

from __future__ import annotations

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
    out = subprocess.run([*command, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "streamapp.app" in (ROOT / "Dockerfile").read_text()
    for service in ("kafka:", "worker-1:", "worker-2:", "loader:"):
        assert service in out.stdout
    # Routing between containers needs each worker's own canonical URL.
    assert "http://worker-1:6066" in out.stdout and "http://worker-2:6066" in out.stdout
