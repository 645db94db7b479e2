"""Forwarding to another of our processes never answers 5xx: an unreachable owner, or this
process's own client closed by a stop while requests are still forwarded, is a 503."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from yarl import URL

from streamapp.http.errors import NOT_READY_HEADER, HTTPError
from streamapp.http.forwarding import call


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
