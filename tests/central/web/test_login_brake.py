"""The dashboard's login brake over real HTTP, on SQLite and PostgreSQL: parallel guessing is
counted before any password is checked, guessing cannot keep the owner out for long, and
X-Forwarded-For is believed only from a configured proxy."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from central import accounts
from central.api.app import create_app
from central.auth import Role
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import WebContext
from central.web.sessions import LoginBrake, SessionSigner, load_or_create_key
from tests.support.logins import OTHER_PEER, attempt, client, parallel_guesses, serving

PASSWORD = "jiancha-password-1"
Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
async def dashboard(database_url: str, tmp_path: Path) -> AsyncIterator[Serve]:
    engine = make_engine(database_url)
    await upgrade(engine)
    await accounts.add(engine, "jiancha", PASSWORD, Role.SUPERVISOR)
    signer = SessionSigner(load_or_create_key(tmp_path))

    @asynccontextmanager
    async def serve(brake: LoginBrake, proxies: tuple[str, ...] = ()) -> AsyncIterator[str]:
        app = create_app(engine)
        app.state.web = WebContext(signer, brake, trusted_proxies=tuple(
            ipaddress.ip_network(p) for p in proxies))
        async with serving(app) as url:
            yield url

    try:
        yield serve
    finally:
        await engine.dispose()


async def test_forty_parallel_guesses_get_five_tries_and_the_owner_still_gets_in(
    dashboard: Serve,
) -> None:
    async with dashboard(LoginBrake(pair_limit=5)) as url:
        statuses = await parallel_guesses(url, "jiancha", 40)
        assert statuses == {401: 5, 429: 35}, statuses
        async with client(url) as c:  # the guessing address waits, with the right one too
            assert (await attempt(c, "jiancha", PASSWORD)).status_code == 429
        async with client(url, OTHER_PEER) as c:  # the owner elsewhere is not held up
            assert (await attempt(c, "jiancha", PASSWORD)).status_code == 303


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy(
    dashboard: Serve,
) -> None:
    def spoofed(i: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"10.9.{i // 200}.{i % 200 + 1}"}

    async with dashboard(LoginBrake(pair_limit=5, address_limit=20)) as url:
        assert await parallel_guesses(url, "jiancha", 40, spoofed) == {401: 5, 429: 35}
    # the peer is not the configured proxy: still ignored
    async with dashboard(LoginBrake(pair_limit=5), proxies=("10.0.0.1/32",)) as url:
        assert await parallel_guesses(url, "jiancha", 40, spoofed) == {401: 5, 429: 35}


async def test_guessing_from_many_addresses_slows_the_account_but_never_locks_it(
    dashboard: Serve,
) -> None:
    def behind_proxy(i: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"203.0.113.{i + 1}"}

    brake = LoginBrake(pair_limit=5, address_limit=20, account_limit=10, account_spacing_s=1.0)
    async with dashboard(brake, proxies=("127.0.0.0/8",)) as url:
        statuses = await parallel_guesses(url, "jiancha", 40, behind_proxy)
        assert statuses[401] <= 11 and statuses[401] + statuses[429] == 40, statuses
        started = time.monotonic()
        async with client(url) as c:
            while True:  # the owner, from an address of their own, is slowed, not locked out
                reply = await attempt(c, "jiancha", PASSWORD,
                                      **{"X-Forwarded-For": "198.51.100.7"})
                if reply.status_code == 303:
                    break
                assert reply.status_code == 429
                await asyncio.sleep(0.2)
        assert time.monotonic() - started < 1.0 + 5  # one spacing, and slack for a slow host
