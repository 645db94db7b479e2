"""docker-compose.yml stays valid (checked without a Docker engine)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from typing import Any

import pytest

from tests.harness import ROOT, free_port

# The host ports docker-compose.yml publishes, each from its own variable.
PORT_VARIABLES = ("KAFKA_LOCAL_PORT", "WEB_PORT", "WEB_PORT_2")


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
    env = {k: v for k, v in os.environ.items() if k not in PORT_VARIABLES}
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
        env={**env, "KAFKA_LOCAL_PORT": "47092", "WEB_PORT": "46066", "WEB_PORT_2": "46067"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert moved.returncode == 0, moved.stderr
    for published in ("127.0.0.1:47092:9094", "127.0.0.1:46066:6066", "127.0.0.1:46067:6066"):
        assert published in moved.stdout
    assert "127.0.0.1:6067:6066" in out.stdout  # worker-2's default


def test_docker_build_context_leaves_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".kafka", "var", "test-artifacts", ".git"} <= ignored


def compose_services() -> dict[str, dict[str, Any]]:
    yaml = pytest.importorskip("yaml")  # comes with the test tools (schemathesis)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert isinstance(services, dict)
    return services


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_every_published_port_has_a_variable() -> None:
    # A fixed host port cannot be moved when it is taken: every one is ${VARIABLE:-default},
    # on 127.0.0.1 only, and no two services share a variable.
    published = re.compile(r"127\.0\.0\.1:\$\{([A-Z][A-Z0-9_]*):-\d+\}:\d+")
    variables = []
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            match = published.fullmatch(port)
            assert match, f"{name}: published port {port!r} has no ${{VARIABLE:-default}}"
            variables.append(match.group(1))
    assert sorted(variables) == sorted(PORT_VARIABLES)


def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services running the image's own command: the worker."""
    return {n: s for n, s in services.items() if "build" in s and "entrypoint" not in s}


def test_every_worker_is_healthchecked_and_waits_for_kafka() -> None:
    services = compose_services()
    assert sorted(workers(services)) == ["worker-1", "worker-2"]
    for name, service in workers(services).items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][:3] == ["CMD", "python", "-c"], f"{name}: {check['test']}"
        assert "/health" in check["test"][3]
        assert check.get("start_period"), f"{name}: recovery needs a start period"
    for name, service in services.items():
        if "build" in service:  # everything of ours needs the broker first
            assert service["depends_on"] == {"kafka": {"condition": "service_healthy"}}, name
    assert "healthcheck" in services["kafka"]
    assert services["loader"]["healthcheck"] == {"disable": True}


def test_the_dockerfile_runs_as_a_user_and_checks_health() -> None:
    instructions = dockerfile_instructions()
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    user = users[-1]
    last_user = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    assert instructions[-1][0] == "CMD" and last_user < len(instructions) - 1
    # The data folder is that user's (a new named volume mounted on it takes its owner).
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert f"chown {user}:{user} /data" in runs
    assert ("ENV", "WEB_HOST=0.0.0.0 WEB_PORT=6066 STREAMAPP_DATA_DIR=/data") in instructions
    (healthcheck,) = [args for op, args in instructions if op == "HEALTHCHECK"]
    assert "--start-period=" in healthcheck
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"] and "/health" in command[2]


class HealthServer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"status": "ok"}' if self.status == 200 else b'{"status": "recovering"}'
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def healthcheck_commands() -> dict[str, list[str]]:
    """The python commands of the image's and the workers' health checks."""
    (image,) = [args for op, args in dockerfile_instructions() if op == "HEALTHCHECK"]
    commands = {"Dockerfile": json.loads(image[image.index("CMD") + len("CMD") :])}
    for name, service in workers(compose_services()).items():
        commands[name] = service["healthcheck"]["test"][1:]
    return commands


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_the_health_checks_pass_on_200_only(status: int | None, healthy: bool) -> None:
    """Each health check, run here with this Python against a stand-in /health on WEB_PORT:
    healthy on 200, not while recovering (503) nor when nothing listens."""
    port = free_port()
    server = None
    if status is not None:
        handler = type("Handler", (HealthServer,), {"status": status})
        server = http.server.HTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name, command in healthcheck_commands().items():
            assert command[0] == "python", name
            done = subprocess.run(
                [sys.executable, *command[1:]],
                env={**os.environ, "WEB_PORT": str(port)},
                capture_output=True,
                timeout=30,
            )
            assert (done.returncode == 0) is healthy, (name, done.stderr)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
