"""Start-up checks that turn a misconfiguration into one clear line."""

from __future__ import annotations

import asyncio
import time


async def broker_unreachable(addresses: list[tuple[str, int]], wait_s: float) -> str | None:
    """None when any bootstrap address accepts TCP within `wait_s`, else why not."""
    deadline = time.monotonic() + wait_s
    problem = "no address"
    while True:
        for host, port in addresses:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
            except (OSError, TimeoutError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
                problem = f"{host}:{port}: {reason}"
                continue
            writer.close()
            return None
        if time.monotonic() >= deadline:
            return problem
        await asyncio.sleep(0.5)
