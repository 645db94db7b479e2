"""The docs name only what exists: files, test functions, environment variables, agents,
tables, routes and metrics. The README's module map names every module, its HTTP table
every route, and its shell examples take every port from the variables it tells users to
export."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from streamapp.core.config import load_settings
from streamapp.serving.settings import serve_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
PATH = re.compile(r"streamapp/[A-Za-z0-9_/]+\.py\b")
# A file of the repository, optionally with a pytest node id (`tests/x.py::test_y`).
REPO_PATH = re.compile(
    r"(?<![\w/])((?:streamapp|tests|scripts|bench|examples)/[\w/.-]+?\.(?:py|sh))\b(?:::(\w+))?"
)
VARIABLE = re.compile(r"\b(?:STREAMAPP|KAFKA|WEB)_[A-Z0-9_]*[A-Z0-9](_\*)?")
# Settings that are gone; only the dated results in docs/performance.md still name them.
RETIRED = {"STREAMAPP_BATCH_WAIT": {"docs/performance.md"}}
METRIC = re.compile(r"\bstreamapp_[a-z0-9_]+")


def doc_lines() -> list[tuple[str, int, str]]:
    return [
        (doc.relative_to(ROOT).as_posix(), number, line)
        for doc in DOCS
        for number, line in enumerate(doc.read_text().splitlines(), 1)
    ]


def section(heading: str) -> str:
    """The text under a README heading, up to the next heading of the same or a higher level."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    level = len(heading) - len(heading.lstrip("#"))
    end = re.compile(rf"\n#{{1,{level}}} ").search(text, start + 1)
    return text[start : end.start() if end else len(text)]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


# --- files ---------------------------------------------------------------------------------


def test_every_repository_path_in_the_docs_exists() -> None:
    missing = []
    for doc, number, line in doc_lines():
        for path, test_name in REPO_PATH.findall(line):
            where = f"{doc}:{number}: {path}"
            if not (ROOT / path).is_file():
                missing.append(where)
            elif test_name and test_name not in function_names(ROOT / path):
                missing.append(f"{where}::{test_name}")
    assert missing == []


def function_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_the_readme_module_map_names_every_module() -> None:
    mapped = set(PATH.findall(section("## Architecture")))
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "streamapp").rglob("*.py")
        if path.name != "__init__.py"
    }
    assert sorted(modules - mapped) == []
    assert sorted(mapped - modules) == []  # and nothing that is not there


# --- environment variables -----------------------------------------------------------------


@cache
def read_in_code(package: str) -> tuple[frozenset[str], frozenset[str]]:
    """Variable names that appear as whole string constants in a package's code (what
    `env.get("NAME")` needs), and f-string prefixes such as `f"STREAMAPP_WEIGHT_{kind}"`."""
    names: set[str] = set()
    prefixes: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(VARIABLE.pattern, node.value):
                    names.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.Constant) and re.fullmatch(
                    r"(?:STREAMAPP|KAFKA|WEB)_[A-Z0-9_]+_", str(first.value)
                ):
                    prefixes.add(str(first.value))
    return frozenset(names), frozenset(prefixes)


def read_by_shell() -> set[str]:
    """Variables the local-broker script, the Makefile and docker-compose.yml expand
    (`$NAME`, `${NAME...}`)."""
    text = (
        (ROOT / "Makefile").read_text()
        + (ROOT / "docker-compose.yml").read_text()
        + "".join(p.read_text() for p in (ROOT / "scripts").glob("*.sh"))
    )
    return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", text))


def is_read(name: str, wildcard: bool) -> bool:
    names, prefixes = read_in_code("streamapp")
    if wildcard:  # `STREAMAPP_SERVE_*`: some variable of that family is read
        return any(n.startswith(name + "_") for n in names)
    if name in names or name in read_by_shell():
        return True
    if any(name.startswith(p) and len(name) > len(p) for p in prefixes):
        return True
    # The test harness's own variables are read by the tests.
    return name.startswith("STREAMAPP_TEST_") and name in read_in_code("tests")[0]


def test_every_variable_the_docs_name_is_read() -> None:
    unread = [
        f"{doc}:{number}: {match.group(0)}"
        for doc, number, line in doc_lines()
        for match in VARIABLE.finditer(line)
        if not is_read(match.group(0).removesuffix("_*"), bool(match.group(1)))
        and doc not in RETIRED.get(match.group(0), set())
    ]
    assert unread == []


def test_retired_variables_are_read_nowhere_and_named_only_in_the_history() -> None:
    for name, docs in RETIRED.items():
        assert not is_read(name, wildcard=False), f"{name} is read again: drop it from RETIRED"
        naming = {doc for doc, _, line in doc_lines() if name in line}
        assert naming and naming <= docs, name


# --- agents and tables ---------------------------------------------------------------------

# "the `a` and `b` agents", "the RocksDB tables `pairs` and `other`"
NAMES = r"(?:`\w+`(?:,? and |, ))*`\w+`"
CALLED = re.compile(rf"({NAMES}) (agents?|tables?)\b|\b(agents?|tables?) ({NAMES})")


def called_in_readme(kind: str) -> set[str]:
    text = " ".join(README.read_text().split())
    found: set[str] = set()
    for before, kind_after, kind_before, after in CALLED.findall(text):
        if (kind_after or kind_before).startswith(kind):
            found |= set(re.findall(r"`(\w+)`", before or after))
    return found


def registered() -> tuple[set[str], set[str]]:
    from streamapp.app import app
    from streamapp.worker import tables
    from streamapp.worker.state_store import StateStore

    agents = {name.rsplit(".", 1)[-1] for name in app.agents}
    # A table by its faust name or by the name the code gives it (`tables.pairs`).
    table_names = set(app.tables) | {
        name for name, value in vars(tables).items() if isinstance(value, StateStore)
    }
    return agents, table_names


def test_the_agents_and_tables_the_readme_names_exist() -> None:
    agents, table_names = registered()
    named_agents, named_tables = called_in_readme("agent"), called_in_readme("table")
    assert named_agents and named_tables  # the README names some, so the check ran
    assert sorted(named_agents - agents) == []
    assert sorted(named_tables - table_names) == []


def test_the_data_flow_shows_every_agent() -> None:
    diagram = re.search(r"```\n(.*?)```", section("## Data flow"), re.S)
    assert diagram
    assert set(re.findall(r"─(\w+)─", diagram.group(1))) == registered()[0]


# --- HTTP routes ---------------------------------------------------------------------------


def readme_routes() -> set[tuple[str, str]]:
    rows = [line for line in section("## HTTP API").splitlines() if line.startswith("| `")]
    return {
        (method, path)
        for row in rows
        for method, path in re.findall(
            r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", row.split("|")[1]
        )
    }


def test_the_readme_http_table_lists_every_route_of_the_worker() -> None:
    from streamapp.app import app

    served = {
        (route.method, route.resource.canonical)
        for route in app.web.web_app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert {path for _, path in served} >= {"/", "/health", "/stats", "/metrics", "/openapi.json"}
    assert readme_routes() == served


def test_the_readme_says_what_a_serving_process_answers_itself(tmp_path: Path) -> None:
    from streamapp.serving.node import ServeNode
    from streamapp.serving.server import build_app

    settings = load_settings({"STREAMAPP_DATA_DIR": str(tmp_path / "data")})
    node = ServeNode(settings, serve_settings(settings, {}), tmp_path / "scratch")
    try:
        routes = {
            (route.method, route.resource.canonical)
            for route in build_app(node).router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
    finally:
        node.close()
    own = {route for route in routes if route[0] != "*"}
    assert routes - own == {("*", "/{tail}")}  # every other path goes to the worker
    assert own <= readme_routes()
    named = set(
        re.findall(r"`(/[^`\s]*)`", section("### Serving processes: lookups beside ingest"))
    )
    assert {path for _, path in own} <= named


# --- metrics -------------------------------------------------------------------------------


def exposed_metrics() -> set[str]:
    from prometheus_client.metrics import MetricWrapperBase

    from streamapp import metrics
    from streamapp.serving import metrics as serve_metrics

    exposed = set()
    for value in [*vars(metrics).values(), *vars(serve_metrics).values()]:
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            exposed.add(family.name + ("_total" if family.type == "counter" else ""))
    return exposed


def test_every_metric_is_in_the_readme_and_the_docs_name_no_other() -> None:
    exposed = exposed_metrics()
    named = {(doc, name) for doc, _, line in doc_lines() for name in METRIC.findall(line)}
    assert sorted((doc, name) for doc, name in named if name not in exposed) == []
    assert sorted(exposed - {name for doc, name in named if doc == "README.md"}) == []


# --- ports in the README's shell examples --------------------------------------------------

DEFAULTED = re.compile(r"\$\{[A-Z_]+:-\d+\}")  # ${WEB_PORT:-6066}: the default, shown


def test_no_readme_shell_block_hard_codes_a_port() -> None:
    literal = []
    for block in sh_blocks(README.read_text()):
        for line in block.splitlines():
            code = re.sub(r"(^|\s)#.*", "", DEFAULTED.sub("", line))
            numbers = re.findall(r"(?<![\w.])\d{4,5}(?![\w.])", code)
            if any(int(n) >= 1024 for n in numbers):
                literal.append(line)
    assert literal == []


STUBS = {  # what the examples run, replaced by lines in $STUB_LOG
    "scripts/kafka-local.sh": 'echo "kafka-local.sh $*" >> "$STUB_LOG"',
    ".venv/bin/faust": 'echo "faust $WEB_PORT $STREAMAPP_DATA_DIR" >> "$STUB_LOG"',
    "bin/curl": 'echo "curl ${*: -1}" >> "$STUB_LOG"',
    "bin/make": 'echo "make $*" >> "$STUB_LOG"',
    "bin/nproc": "echo 3",
}


def run_with_stubs(block: str, exported: dict[str, str], tmp_path: Path) -> list[str]:
    for relative, body in STUBS.items():
        stub = tmp_path / relative
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f"#!/bin/bash\n{body}\n")
        stub.chmod(0o755)
    log = tmp_path / "stub.log"
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "STUB_LOG": str(log), **exported}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block + "wait\n"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return sorted(log.read_text().splitlines())  # background jobs finish in any order


def first_sh_block(heading: str) -> str:
    return sh_blocks(section(heading))[0]


EXPORTED = [{}, {"KAFKA_LOCAL_PORT": "47092", "WEB_PORT": "46066"}]


@pytest.mark.parametrize("exported", EXPORTED)
def test_several_workers_example_follows_the_exported_web_port(
    exported: dict[str, str], tmp_path: Path
) -> None:
    port = load_settings(exported).web_port
    calls = run_with_stubs(first_sh_block("## Running several workers"), exported, tmp_path)
    assert calls == [
        f"curl 127.0.0.1:{port + 1}/affinity/123/456",
        f"faust {port} var/w1",
        f"faust {port + 1} var/w2",
        "kafka-local.sh start",
    ]


@pytest.mark.parametrize("exported", EXPORTED)
def test_one_worker_per_core_example_follows_the_exported_web_port(
    exported: dict[str, str], tmp_path: Path
) -> None:
    port = load_settings(exported).web_port
    calls = run_with_stubs(first_sh_block("### One worker per core"), exported, tmp_path)
    assert calls == [f"faust {port + i} var/w{i}" for i in range(3)]  # nproc: 3


@pytest.mark.parametrize(
    "exported", [*EXPORTED, {"WEB_PORT": "46066", "STREAMAPP_SERVE_PORT": "47000"}]
)
def test_serving_process_example_calls_the_port_the_serving_process_binds(
    exported: dict[str, str], tmp_path: Path
) -> None:
    serve_port = serve_settings(load_settings(exported), exported).port
    block = first_sh_block("### Serving processes: lookups beside ingest")
    calls = run_with_stubs(block, exported, tmp_path)
    assert calls == [f"curl 127.0.0.1:{serve_port}/affinity/123/456", "make run", "make serve"]
