"""The OpenAPI description matches what the servers accept and answer: schemathesis, with
every check it has, against a worker and against a serving process beside it.

Each operation of /openapi.json gets valid (positive) and invalid (negative) requests from
the examples, coverage and fuzzing phases: a valid request must be accepted (2xx, or a
documented 404 for an unknown profile), an invalid one refused with a documented 4xx, never a
5xx, and every answer must have a documented status, content type, headers and body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from tests.harness import Namespace, Out, Server, Worker, produce, wait_until

pytestmark = pytest.mark.integration

TOKEN = "openapi-fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def worker(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    ns = Namespace(bootstrap)
    w = Worker(
        ns, tmp_path_factory.mktemp("openapi") / "data", "openapi", STREAMAPP_API_TOKEN=TOKEN
    )
    try:
        w.start()
        interaction = {"id": "i1", "user_id": "u1", "seller_id": "s1", "interaction_kind": "LIKE"}
        produce(bootstrap, [Out(ns.topic("interactions"), json.dumps(interaction).encode())])
        wait_until(
            lambda: w.get("/affinity/u1/s1", headers=AUTH)[1]["number_of_interactions"] == 1, 30
        )
        yield w
    finally:
        w.kill()


@pytest.fixture(scope="module")
def serve(worker: Worker) -> Iterator[Server]:
    s = Server(worker)
    try:
        s.start()  # waits for its /health
        wait_until(lambda: s.get("/affinity/u1/s1", headers=AUTH)[0] == 200, 30)
        yield s
    finally:
        s.kill()


def load(server: Worker) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "base-url": server.url,
            # Every phase that works on single operations; every check on (all are on by
            # default, and positive and negative generation modes are both the default).
            "phases": {"examples": {}, "coverage": {}, "fuzzing": {}},
            "checks": {"enabled": True},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config, headers=AUTH)


@pytest.fixture(scope="module")
def worker_schema(worker: Worker) -> Any:
    return load(worker)


@pytest.fixture(scope="module")
def serve_schema(serve: Server) -> Any:
    return load(serve)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis (4.32) reads and rewrites `item._nodeid`, which pytest 9.2 no longer has
    (its node ids are structured now): give it the string to read; its rewrite (the
    operation's name in the id) then only changes that copy."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


lazy_worker = schemathesis.pytest.from_fixture("worker_schema")
lazy_serve = schemathesis.pytest.from_fixture("serve_schema")
fuzz_settings = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@lazy_worker.parametrize()
@fuzz_settings
def test_worker_matches_its_openapi(case: Any) -> None:
    case.call_and_validate(timeout=30)


@lazy_serve.parametrize()
@fuzz_settings
def test_serving_process_matches_its_openapi(case: Any) -> None:
    case.call_and_validate(timeout=30)


@pytest.mark.parametrize("server", ["worker", "serve"])
def test_the_document_itself_is_served_as_described(
    server: str, request: pytest.FixtureRequest
) -> None:
    """schemathesis skips the operation that serves the schema it tests: check it here."""
    target: Worker = request.getfixturevalue(server)
    status, body = target.get("/openapi.json", headers=AUTH)
    assert status == 200 and body["paths"]["/openapi.json"]["get"]["security"] == [{"bearer": []}]
    assert set(body["paths"]["/openapi.json"]["get"]["responses"]) == {"200", "400", "401", "503"}
    status, body = target.get("/openapi.json")
    assert status == 401 and body["error"], (status, body)
