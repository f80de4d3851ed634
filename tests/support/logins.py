"""Real-HTTP helpers for the login brakes of both pages (hall page and dashboard): a uvicorn
server on a free port, and bursts of parallel login attempts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import uvicorn

# 127.0.0.0/8 is all loopback on Linux: a client bound to another of its addresses is a
# second real peer address without any network set-up
OTHER_PEER = "127.0.0.2"


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C stays pytest's: the server stops when the test leaves ``serving``


@contextlib.asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free port (no proxy-header rewriting, as deployed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = _QuietServer(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", proxy_headers=False)
    )
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
    return httpx.AsyncClient(
        base_url=url, transport=transport, timeout=60, limits=httpx.Limits(max_connections=100)
    )


async def attempt(c: httpx.AsyncClient, name: str, password: str, **headers: str) -> httpx.Response:
    return await c.post(
        "/login", data={"username": name, "password": password, "next": "/"}, headers=headers
    )


async def parallel_guesses(
    url: str, name: str, n: int, headers: Callable[[int], dict[str, str]] = lambda i: {}
) -> Counter[int]:
    """``n`` wrong passwords for ``name`` sent at once; the answers' status codes counted
    (401: a password was checked and refused, 429: the brake refused before checking)."""
    async with client(url) as c:
        replies = await asyncio.gather(
            *(attempt(c, name, f"wrong-guess-{i:04d}", **headers(i)) for i in range(n))
        )
    return Counter(r.status_code for r in replies)


# The same three checks for both pages. ``serve(brake, proxies=…)`` is an async context
# manager yielding the page's address; ``Brake`` is the page's own brake class.


async def forty_guesses_get_five_tries(serve: Any, brake: Any, name: str, password: str) -> None:
    async with serve(brake(pair_limit=5)) as url:
        statuses = await parallel_guesses(url, name, 40)
        assert statuses == {401: 5, 429: 35}, statuses
        async with client(url) as c:  # the guessing address waits, with the right one too
            assert (await attempt(c, name, password)).status_code == 429
        async with client(url, OTHER_PEER) as c:  # the owner elsewhere is not held up
            assert (await attempt(c, name, password)).status_code == 303


def _spoofed(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.9.{i // 200}.{i % 200 + 1}"}


async def forwarded_for_needs_a_configured_proxy(serve: Any, brake: Any, name: str) -> None:
    async with serve(brake(pair_limit=5, address_limit=20)) as url:
        # no proxy configured: forty invented addresses are still the one real peer
        assert await parallel_guesses(url, name, 40, _spoofed) == {401: 5, 429: 35}
    async with serve(brake(pair_limit=5), proxies=("10.0.0.1/32",)) as url:
        # a proxy is configured, but the peer is not it
        assert await parallel_guesses(url, name, 40, _spoofed) == {401: 5, 429: 35}


async def many_addresses_slow_the_account_but_never_lock_it(
    serve: Any, brake: Any, name: str, password: str
) -> None:
    def behind_proxy(i: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"203.0.113.{i + 1}, 127.0.0.1"}

    spacing = 1.0
    async with serve(
        brake(pair_limit=5, address_limit=20, account_limit=10, account_spacing_s=spacing),
        proxies=("127.0.0.0/8",),
    ) as url:
        statuses = await parallel_guesses(url, name, 40, behind_proxy)
        # forty addresses, each under its own limits: the account's limit holds them to ten
        # tries, plus at most one per spacing interval while the burst lasts
        assert statuses[401] <= 11 and statuses[401] + statuses[429] == 40, statuses
        started = time.monotonic()
        async with client(url) as c:
            while True:  # the owner, from an address of their own, is slowed, not locked out
                reply = await attempt(c, name, password, **{"X-Forwarded-For": "198.51.100.7"})
                if reply.status_code == 303:
                    break
                assert reply.status_code == 429
                await asyncio.sleep(0.2)
        assert time.monotonic() - started < spacing + 5  # slack for a loaded host
