"""Real-HTTP helpers for the login brakes of both pages (hall page and dashboard): a uvicorn
server on a free port, and bursts of parallel login attempts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn

# 127.0.0.0/8 is all loopback on Linux: a client bound to another of its addresses is a
# second real peer address without any network set-up
OTHER_PEER = "127.0.0.2"


@contextlib.asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free port (no proxy-header rewriting, as deployed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off", proxy_headers=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
            await asyncio.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def client(url: str, peer: str | None = None) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=peer) if peer else None
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=60,
                             limits=httpx.Limits(max_connections=100))


async def attempt(c: httpx.AsyncClient, name: str, password: str, **headers: str
                  ) -> httpx.Response:
    return await c.post("/login", data={"username": name, "password": password, "next": "/"},
                        headers=headers)


async def parallel_guesses(url: str, name: str, n: int,
                           headers: Callable[[int], dict[str, str]] = lambda i: {}
                           ) -> Counter[int]:
    """``n`` wrong passwords for ``name`` sent at once; the answers' status codes counted
    (401: a password was checked and refused, 429: the brake refused before checking)."""
    async with client(url) as c:
        replies = await asyncio.gather(*(attempt(c, name, f"wrong-guess-{i:04d}", **headers(i))
                                         for i in range(n)))
    return Counter(r.status_code for r in replies)
