"""Forwarding to another of our processes never answers 5xx: an unreachable owner, or this
process's own client closed by a stop while requests are still forwarded, is a 503."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from streamapp.http.errors import NOT_READY_HEADER, HTTPError
from streamapp.http.forwarding import Forwarder, call
from tests.unit.local_http import serving


def test_a_stopping_process_and_an_unreachable_owner_are_503() -> None:
    async def run() -> list[HTTPError]:
        errors = []
        client = aiohttp.ClientSession()
        try:
            # Port 9 (discard) on loopback: nothing listens there in the test machines.
            await call(client, "GET", URL("http://127.0.0.1:9/health"), {}, None, "owner")
        except HTTPError as exc:
            errors.append(exc)
        await client.close()  # what faust's App.on_stop does while requests are in flight
        try:
            await call(client, "GET", URL("http://127.0.0.1:9/health"), {}, None, "owner")
        except HTTPError as exc:
            errors.append(exc)
        return errors

    unreachable, stopping = asyncio.run(asyncio.wait_for(run(), 30))
    assert unreachable.status == 503 and "unreachable" in unreachable.message
    assert stopping.status == 503 and stopping.message == "stopping, retry shortly"
    assert stopping.headers == unreachable.headers == {"Retry-After": "1", NOT_READY_HEADER: "1"}


def test_other_runtime_errors_are_not_hidden() -> None:
    class Broken(aiohttp.ClientSession):
        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
            raise RuntimeError("a bug")

    async def run() -> None:
        client = Broken()
        try:
            await call(client, "GET", URL("http://127.0.0.1:9/"), {}, None, "owner")
        finally:
            await client.close()

    with pytest.raises(RuntimeError, match="a bug"):
        asyncio.run(run())


def test_a_forwarded_part_gets_the_owners_results_its_errors_or_a_503() -> None:
    """The owner's results and its errors (status and message) pass through; an answer
    that is not JSON at all (a proxy's error page) is a 503 to retry, not a 500."""
    answers = {  # what the owner says to each forwarded part, in turn
        "ok": lambda: web.json_response({"results": [{"user_id": "u", "seller_id": "s"}]}),
        "error": lambda: web.json_response({"error": "too many pairs"}, status=413),
        "no message": lambda: web.json_response({"detail": "x"}, status=400),
        "a list": lambda: web.json_response(["x"], status=502),
        "page": lambda: web.Response(text="<html>bad gateway</html>", status=502),
        "empty": lambda: web.Response(status=504),
    }
    turn = iter(answers.values())

    class Request:  # the client's request being forwarded
        headers: dict[str, str] = {}

    async def run() -> dict[str, object]:
        async def owner(request: web.Request) -> web.Response:
            return next(turn)()

        app = web.Application()
        app.router.add_post("/affinity/query", owner)
        out: dict[str, object] = {}
        async with serving(app) as url, aiohttp.ClientSession() as client:
            forwarder = Forwarder(b"k" * 32, lambda: client)
            for case in answers:
                try:
                    out[case] = await forwarder.forward_query(Request(), URL(url), [], 1)
                except HTTPError as exc:
                    out[case] = (exc.status, exc.message, exc.headers)
        return out

    out = asyncio.run(asyncio.wait_for(run(), 30))
    assert out["ok"] == ([{"user_id": "u", "seller_id": "s"}], {})
    assert out["error"] == (413, "too many pairs", {})
    assert out["no message"] == (400, "owner failed", {})
    assert out["a list"] == (502, "owner failed", {})
    for case in ("page", "empty"):
        status, message, headers = out[case]  # type: ignore[misc]
        assert status == 503 and "unreadable answer" in message, (case, message)
        assert headers[NOT_READY_HEADER] == "1"
