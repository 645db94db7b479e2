"""The Makefile's long-running targets: what they print before the process takes over."""

from __future__ import annotations

from tests.harness import ROOT


def recipe(target: str) -> list[str]:
    """The recipe lines of `target` (tab-indented lines after its rule line)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    body: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        body.append(line[1:])
    return body


def test_run_and_serve_do_not_echo_their_command_lines() -> None:
    # Each starts a long-running process; its own first lines are what the user should see.
    for target in ("run", "serve"):
        body = recipe(target)
        assert body, f"no recipe for {target}"
        assert body[0].startswith("@"), f"`make {target}` echoes: {body[0]}"


def test_run_leaves_the_broker_address_to_kafka_local_port() -> None:
    # The worker derives the address from KAFKA_LOCAL_PORT itself and says so when the broker
    # is unreachable; an exported KAFKA_BROKER would make it name the wrong variable.
    assert not any("KAFKA_BROKER=" in line for line in recipe("run"))
