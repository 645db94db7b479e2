"""A lean HTTP/1.1 keep-alive client for the benchmark's load generator (issue 20).

aiohttp's client costs about 0.3 ms of CPU a request on this machine, as much as the
serving process spends answering a single lookup: at a few thousand requests a second the
load generator took most of a core from the two the server, the worker and the broker share.
This one writes pre-built request bytes on a pooled connection and reads the answer by its
Content-Length, with nothing else (no redirects, cookies, chunked bodies or TLS): what a
benchmark of our own server needs, at a fraction of the cost (`python -m bench.raw_http
--url ...` prints both clients' CPU per request against the same server).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from bench.common import proc_cpu_s, summary_ms


class HTTPFailure(Exception):
    """The connection broke or the answer could not be read."""


def get(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def post_json(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def segment(value: str) -> str:
    """A path segment, percent-encoded as a client must (ids may hold '/', '%', ...)."""
    return quote(value, safe="")


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPFailure(f"connection lost: {exc!r}"))

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self._fail(HTTPFailure("an answer without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop > 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))
        if b"\r\nconnection: close" in head:
            self.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Up to `limit` connections to one server; a request waits for a free one."""

    def __init__(self, url: str, limit: int = 64) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.host_header = f"{self.host}:{self.port}"
        self.limit = limit
        self.idle: list[_Connection] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def _acquire(self) -> _Connection:
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn
                self.opened -= 1
            if self.opened < self.limit:
                self.opened += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Connection, self.host, self.port
                    )
                except OSError:
                    self.opened -= 1
                    raise
                return conn
            async with self.freed:
                await self.freed.wait()

    async def _release(self, conn: _Connection) -> None:
        if conn.closed:
            self.opened -= 1
        else:
            self.idle.append(conn)
        async with self.freed:
            self.freed.notify()

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        """(status, body) of one request (its bytes as get() / post_json() build them);
        TimeoutError after `timeout` seconds (the connection is dropped), HTTPFailure or
        OSError when the connection fails."""
        conn = await self._acquire()
        try:
            async with asyncio.timeout(timeout):
                return await conn.send(raw)
        except BaseException:
            conn.close()
            raise
        finally:
            await self._release(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def affinity(host: str, user_id: str, seller_id: str) -> bytes:
    """GET /affinity/{user_id}/{seller_id}."""
    return get(host, f"/affinity/{segment(user_id)}/{segment(seller_id)}")


async def one_at_a_time(
    url: str,
    build: Callable[[str, int], bytes],
    count: int,
    warm_up: int = 10,
    pid: int | None = None,
) -> dict[str, Any]:
    """`warm_up` + `count` requests one after another, request i's bytes from build(host,
    i), each timed from its send to its answer (its bytes are built before the clock
    starts): p50/p99 of the last `count` (bench.common.summary_ms), and with `pid` the
    server's CPU per request over all of them (server_cpu_ms: /proc, 10 ms ticks), which
    neither the client's time nor the machine's noise blurs. RuntimeError on an answer
    other than 200."""
    return (await interleaved([Stream(url, build, pid)], count, warm_up))[0]


class StreamFailed(RuntimeError):
    """A request of stream number `index` of interleaved() failed."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class Stream(NamedTuple):
    """One kind of request of interleaved(): where to, how to build request i, and the
    server's pid for its CPU (None: not measured)."""

    url: str
    build: Callable[[str, int], bytes]
    pid: int | None = None


async def interleaved(streams: list[Stream], count: int, warm_up: int = 10) -> list[dict[str, Any]]:
    """one_at_a_time() of several streams in turns (request i of each, then request i + 1
    of each, ...), one request in flight at a time: each stream's summary, as one_at_a_time
    gives it. Turns put two servers' requests in the same seconds, so a burst of the
    machine's noise falls on both: a ratio of two of their figures is not a comparison of
    two different minutes. The servers' CPU is per pid, so streams to one server share it."""
    pools = [Pool(stream.url, 1) for stream in streams]
    times: list[list[float]] = [[] for _ in streams]
    cpu0 = [proc_cpu_s(stream.pid) if stream.pid else None for stream in streams]
    try:
        for i in range(warm_up + count):
            for n, (stream, pool) in enumerate(zip(streams, pools, strict=True)):
                request = stream.build(pool.host_header, i)
                began = time.monotonic()
                try:
                    status, _ = await pool.request(request, 30.0)
                except (OSError, HTTPFailure) as exc:  # TimeoutError is an OSError
                    raise StreamFailed(n, f"{stream.url}: {exc!r}") from None
                if status != 200:
                    raise StreamFailed(n, f"{stream.url} answered {status}")
                if i >= warm_up:  # the first ones open the connection and warm caches
                    times[n].append(time.monotonic() - began)
    finally:
        for pool in pools:
            pool.close()
    out = []
    for stream, took, before in zip(streams, times, cpu0, strict=True):
        summary = summary_ms(took, (50, 99))
        after = proc_cpu_s(stream.pid) if stream.pid else None
        if before is not None and after is not None:
            summary["server_cpu_ms"] = round((after - before) * 1000 / (warm_up + count), 3)
        out.append(summary)
    return out


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _compare(url: str, n: int) -> None:
    """CPU per request of this client and of aiohttp's, one at a time, same server."""
    import aiohttp

    path = urlsplit(url).path or "/"
    pool = Pool(url)
    raw = get(pool.host_header, path)
    began = _cpu_s()
    for _ in range(n):
        status, _body = await pool.request(raw, 10.0)
        assert status == 200, status
    lean = (_cpu_s() - began) / n
    pool.close()
    async with aiohttp.ClientSession() as session:
        began = _cpu_s()
        for _ in range(n):
            async with session.get(url) as response:
                await response.read()
        rich = (_cpu_s() - began) / n
    print(f"raw_http {lean * 1e6:.0f} µs CPU a request; aiohttp {rich * 1e6:.0f} µs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="a URL answering 200 to GET")
    p.add_argument("--requests", type=int, default=3000)
    args = p.parse_args()
    started = time.monotonic()
    asyncio.run(_compare(args.url, args.requests))
    print(f"{time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
