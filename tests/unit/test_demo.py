"""The demo writes only ids of its own, and what it prints can be pasted into a shell."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import shlex
import subprocess

import pytest

from streamapp.core.config import load_settings
from streamapp.tools import demo
from tests.harness import ROOT

QUICK_START_MARKER = "<!-- quick-start-client"


def quick_start_ids() -> set[str]:
    """Every user, seller and interaction id the README's quick start and
    examples/example_query.py use: data of the user's own, which the demo must not change."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```sh\n(.*?)```", readme[readme.index(QUICK_START_MARKER) :], re.S)
    assert match, "the quick start's client block is missing"
    block = match.group(1)
    ids = set(re.findall(r'"(?:id|user_id|seller_id)":\s*"([^"]+)"', block))
    for user, seller in re.findall(r"/affinity/([^/\s'\"]+)/([^/\s'\"?]+)", block):
        ids |= {user, seller}
    ids |= set(re.findall(r"/users/([^/\s'\"]+)/", block))
    spec = importlib.util.spec_from_file_location(
        "example_query", ROOT / "examples/example_query.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    ids |= {example.USER, *example.SELLERS}
    # The parse found the quick start's data (else the test below would pass on nothing).
    assert {"123", "456", "457", "458", "i1", "i2"} <= ids
    return ids


def test_the_demo_writes_no_id_of_the_quick_start() -> None:
    catalogue = demo.make_catalogue(random.Random(7))
    traffic = demo.Traffic(catalogue, random.Random(8))
    interactions = [traffic.next() for _ in range(20_000)]
    # Profiles are keyed by their id, interactions by user id (demo.produce).
    written = {u["id"] for u in catalogue.users} | {s["id"] for s in catalogue.sellers}
    for message in interactions:
        written |= {message["id"], message["user_id"], message["seller_id"]}
    assert len(catalogue.users) == 200 and len(catalogue.sellers) == 50
    assert written.isdisjoint(quick_start_ids())
    assert all(i.startswith(demo.ID_PREFIX) for i in written)
    assert demo.STAR_USER in {m["user_id"] for m in interactions}


def shell_words(line: str, token: str = "") -> list[str]:
    """The words bash makes of `line` with `curl` stubbed to print its arguments, in a shell
    where STREAMAPP_API_TOKEN is `token`."""
    script = f"curl() {{ printf '%s\\n' \"$@\"; }}\n{line}"
    out = subprocess.run(
        ["bash", "-euc", script],
        capture_output=True,
        text=True,
        timeout=10,
        env={"STREAMAPP_API_TOKEN": token},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("token", ["", "a-token-of-32-characters-for-test"])
def test_the_printed_lines_are_shell_safe(capsys: pytest.CaptureFixture[str], token: str) -> None:
    settings = load_settings({"STREAMAPP_API_TOKEN": token} if token else {})
    demo.print_try_this("http://127.0.0.1:6066", settings)
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip()]
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    assert lines[0] == "Try:"
    assert shell_words(lines[1], token) == [
        "-s",
        *auth,
        "http://127.0.0.1:6066/affinity/demo_u1/demo_s1",
    ]
    words = shell_words(lines[2], token)
    assert words[: 3 + len(auth)] == ["-s", *auth, "-XPOST", "http://127.0.0.1:6066/affinity/query"]
    assert words[3 + len(auth)] == "-d"
    assert json.loads(words[4 + len(auth)]) == {
        "pairs": [{"user_id": "demo_u1", "seller_id": f"demo_s{i}"} for i in (1, 2, 3)]
    }
    assert shell_words(lines[3], token) == [
        "-s",
        *auth,
        "http://127.0.0.1:6066/users/demo_u1/top-sellers?k=5",
    ]
    # The live page: a plain line, the address quoted so that its `&` survives a paste.
    prefix = "Open this in a browser: "
    assert lines[4].startswith(prefix) and len(lines) == 5
    quoted = lines[4].removeprefix(prefix)
    assert shlex.split(quoted) == ["http://127.0.0.1:6066/#user=demo_u1&seller=demo_s1"]
    assert shell_words(f"curl {quoted}") == ["http://127.0.0.1:6066/#user=demo_u1&seller=demo_s1"]
