"""The benchmark's lean HTTP client (bench/raw_http.py) reads what a real aiohttp server
answers: status and body of GETs and POSTs, percent-encoded path segments, bodies split
across reads, connections reused, a timeout, and a server that closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from bench import raw_http
from tests.unit.local_http import serving

BIG = b"x" * 300_000  # arrives in many reads


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    peers: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(str(request.transport.get_extra_info("peername")))
        return web.json_response({"path": request.match_info["rest"]})

    async def post(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/json")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BIG)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="late")

    async def closing(request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/echo/{rest}", echo)
    app.router.add_post("/post", post)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/close", closing)
    async with serving(app) as url:
        yield url, peers


async def test_get_post_and_reuse(server: tuple[str, list[str]]) -> None:
    url, peers = server
    pool = raw_http.Pool(url, 2)
    host = pool.host_header
    try:
        for ident in ("u1", "a/b %c", "ü"):
            status, body = await pool.request(
                raw_http.get(host, f"/echo/{raw_http.segment(ident)}"), 5
            )
            assert (status, orjson.loads(body)) == (200, {"path": ident})
        assert len(set(peers)) == 1  # one connection, kept alive
        payload = orjson.dumps({"pairs": [{"user_id": "u", "seller_id": "s"}] * 500})
        assert await pool.request(raw_http.post_json(host, "/post", payload), 5) == (200, payload)
        assert await pool.request(raw_http.get(host, "/big"), 5) == (200, BIG)
        status, body = await pool.request(raw_http.get(host, "/missing"), 5)
        assert status == 404
        answers = await asyncio.gather(
            *(pool.request(raw_http.get(host, f"/echo/{n}"), 5) for n in range(20))
        )
        assert [orjson.loads(b)["path"] for _, b in answers] == [str(n) for n in range(20)]
        assert pool.opened <= 2
    finally:
        pool.close()


async def test_timeout_and_closing_server(server: tuple[str, list[str]]) -> None:
    url, _ = server
    pool = raw_http.Pool(url, 1)
    host = pool.host_header
    try:
        with pytest.raises(TimeoutError):
            await pool.request(raw_http.get(host, "/slow"), 0.2)
        assert await pool.request(raw_http.get(host, "/close"), 5) == (200, b"bye")
        # The closed connection is not reused: the next request opens another.
        status, body = await pool.request(raw_http.get(host, "/echo/x"), 5)
        assert (status, orjson.loads(body)) == (200, {"path": "x"})
    finally:
        pool.close()


async def test_interleaved_streams_take_turns(server: tuple[str, list[str]]) -> None:
    """Request i of each stream, then request i + 1 of each: the server sees them in turns,
    and each stream's summary counts its own requests only."""
    url, peers = server

    def echo(tag: str) -> raw_http.Stream:
        return raw_http.Stream(url, lambda host, i: raw_http.get(host, f"/echo/{tag}{i}"))

    a, b = await raw_http.interleaved([echo("a"), echo("b")], count=5, warm_up=2)
    assert a["n"] == b["n"] == 5
    assert "server_cpu_ms" not in a  # no pid given
    assert len(peers) == 14 and len(set(peers)) == 2  # a connection of each stream, kept
    first = peers[0]
    assert peers == [p for _ in range(7) for p in (first, next(q for q in peers if q != first))]
    missing = raw_http.Stream(url, lambda h, i: raw_http.get(h, "/no"))
    with pytest.raises(raw_http.StreamFailed, match="answered 404") as failed:
        await raw_http.interleaved([echo("a"), missing], 1)
    assert failed.value.index == 1  # which stream failed: the floor's or the lookup's
