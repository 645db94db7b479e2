"""streamapp.client against a tiny real HTTP server on 127.0.0.1: the bearer token it sends,
503 + Retry-After retried within its budget, and the errors it raises."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streamapp.client import APIError, Client, retry_after_s

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "client-token-123"
VECTOR = {"id": "u1-s1", "user_id": "u1", "seller_id": "s1", "number_of_interactions": 2}
RECOVERING = {"error": "recovering: state is being restored, retry shortly"}
UNAUTHORISED = {"error": "missing or wrong bearer token"}


class Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class Seen:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.at = time.monotonic()


class Script:
    """Answers requests in order; the last answer repeats. Records every request."""

    def __init__(self) -> None:
        self.answers: list[Answer] = [Answer(200, VECTOR)]
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def next(self, seen: Seen) -> Answer:
        with self.lock:
            self.seen.append(seen)
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            got = script.next(Seen(self.command, self.path, dict(self.headers), body))
            payload = json.dumps(got.body).encode()
            self.send_response(got.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in got.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = answer

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMAPP_API_TOKEN", raising=False)


def test_the_token_parameter_is_sent_as_a_bearer_token(server: tuple[str, Script]) -> None:
    url, script = server
    assert Client(url, token=TOKEN).affinity("u1", "s1") == VECTOR
    assert [(s.method, s.path) for s in script.seen] == [("GET", "/affinity/u1/s1")]
    assert script.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_token_comes_from_the_env_and_the_parameter_wins(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = server
    monkeypatch.setenv("STREAMAPP_API_TOKEN", "env-token-456")
    script.answers = [Answer(200, {"results": [VECTOR]})]
    assert Client(url).query([("u1", "s1")]) == [VECTOR]
    assert Client(url, token=TOKEN).query([("u1", "s1")]) == [VECTOR]
    assert Client(url, token="").query([("u1", "s1")]) == [VECTOR]  # "" sends none
    auth = [s.headers.get("Authorization") for s in script.seen]
    assert auth == ["Bearer env-token-456", f"Bearer {TOKEN}", None]
    assert json.loads(script.seen[0].body) == {"pairs": [{"user_id": "u1", "seller_id": "s1"}]}


def test_no_token_sends_no_authorization_header(server: tuple[str, Script]) -> None:
    url, script = server
    assert Client(url).affinity("u1", "s1") == VECTOR
    assert "Authorization" not in script.seen[0].headers


def test_a_token_with_spaces_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as err:
        Client("http://127.0.0.1:9", token="secret value\n")
    assert str(err.value) == "STREAMAPP_API_TOKEN / token: must not contain spaces or line breaks"
    assert "secret" not in repr(Client("http://127.0.0.1:9", token="secret-value"))


def test_a_503_with_retry_after_is_retried_then_succeeds(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [
        Answer(503, RECOVERING, {"Retry-After": "1"}),
        Answer(503, RECOVERING, {"Retry-After": "0"}),
        Answer(200, VECTOR),
    ]
    started = time.monotonic()
    assert Client(url, token=TOKEN, retry_budget_s=5).affinity("u1", "s1") == VECTOR
    assert len(script.seen) == 3
    gaps = [b.at - a.at for a, b in zip(script.seen, script.seen[1:], strict=False)]
    assert gaps[0] >= 1.0  # waited what Retry-After said
    assert 0.1 <= gaps[1] < 1.0  # "0": at once, but not in a tight loop
    assert time.monotonic() - started < 3
    assert {s.headers["Authorization"] for s in script.seen} == {f"Bearer {TOKEN}"}


def test_a_retry_after_date_is_honoured(server: tuple[str, Script]) -> None:
    url, script = server
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    script.answers = [Answer(503, RECOVERING, {"Retry-After": past}), Answer(200, VECTOR)]
    assert Client(url, retry_budget_s=2).affinity("u1", "s1") == VECTOR
    assert len(script.seen) == 2
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("Tue, 01 Jan 2030 12:00:07 GMT", now) == 7.0
    assert retry_after_s("Tue, 01 Jan 2030 11:00:00 GMT", now) == 0.0
    assert (retry_after_s("12"), retry_after_s(" 3 "), retry_after_s(None)) == (12.0, 3.0, None)
    assert (retry_after_s("soon"), retry_after_s("-1"), retry_after_s("1.5")) == (None, None, None)


def test_retries_stop_at_the_budget(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [Answer(503, RECOVERING, {"Retry-After": "1"})]
    started = time.monotonic()
    with pytest.raises(APIError) as err:
        Client(url, retry_budget_s=2.5).affinity("u1", "s1")
    elapsed = time.monotonic() - started
    assert len(script.seen) == 3  # at 0, 1 and 2 s; a third wait would end past 2.5 s
    assert 2.0 <= elapsed < 2.5
    assert err.value.status == 503
    assert err.value.message == (
        "recovering: state is being restored, retry shortly (still 503 after retrying for 2.5 s)"
    )


def test_a_wait_beyond_the_budget_raises_at_once(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [Answer(503, RECOVERING, {"Retry-After": "60"})]
    started = time.monotonic()
    with pytest.raises(APIError) as err:
        Client(url).affinity("u1", "s1")  # the default budget is 30 s
    assert time.monotonic() - started < 1
    assert (err.value.status, err.value.message, len(script.seen)) == (503, RECOVERING["error"], 1)


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}])
def test_a_503_without_a_usable_retry_after_raises_as_before(
    server: tuple[str, Script], headers: dict[str, str]
) -> None:
    url, script = server
    script.answers = [Answer(503, RECOVERING, headers)]
    with pytest.raises(APIError) as err:
        Client(url).affinity("u1", "s1")
    assert str(err.value) == f"HTTP 503: {RECOVERING['error']}"
    assert len(script.seen) == 1


def test_health_is_a_probe_and_never_retries(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [Answer(503, RECOVERING, {"Retry-After": "1"})]
    assert Client(url).health() is False
    assert len(script.seen) == 1
    script.answers = [Answer(200, {"status": "ok"})]
    assert Client(url).health() is True


def test_a_401_without_a_token_says_one_is_needed(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [Answer(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})]
    with pytest.raises(APIError) as err:
        Client(url).top_sellers("u1")
    assert str(err.value) == (
        "HTTP 401: the worker needs a bearer token: set STREAMAPP_API_TOKEN or pass "
        "Client(token=...) (missing or wrong bearer token)"
    )
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "the worker refused the token sent: check STREAMAPP_API_TOKEN (or token=)"),
        (403, "the token sent is not allowed to do this"),
    ],
)
def test_a_refused_token_is_named_but_never_echoed(
    server: tuple[str, Script], status: int, hint: str
) -> None:
    url, script = server
    script.answers = [Answer(status, UNAUTHORISED)]
    with pytest.raises(APIError) as err:
        Client(url, token=TOKEN).user("u1")
    assert str(err.value) == f"HTTP {status}: {hint} (missing or wrong bearer token)"
    assert TOKEN not in str(err.value)


def run_example(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "STREAMAPP_API_TOKEN"}
    return subprocess.run(
        [sys.executable, "examples/example_query.py"],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), "STREAMAPP_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_example_sends_the_env_token_and_prints_rows(server: tuple[str, Script]) -> None:
    url, script = server
    row = {**VECTOR, "user_id": "123", "favorites_match": True, "user_seller_score": 4.5}
    script.answers = [Answer(200, {"results": [row]})]
    out = run_example(url, STREAMAPP_API_TOKEN=TOKEN)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines()[2].split() == ["123", "s1", "true", "2", "4.5000"]
    assert script.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_example_reports_an_api_error_in_one_line(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [Answer(401, UNAUTHORISED)]
    out = run_example(url)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (
        f"the worker at {url} answered HTTP 401: the worker needs a bearer token: set "
        "STREAMAPP_API_TOKEN or pass Client(token=...) (missing or wrong bearer token)\n"
    )


def test_the_example_reports_an_unreachable_worker_in_one_line() -> None:
    with socket.socket() as probe:  # a port just freed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    out = run_example(dead, STREAMAPP_API_TOKEN=TOKEN)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"cannot reach the worker at {dead}: ")
    assert out.stderr.count("\n") == 1 and TOKEN not in out.stderr
