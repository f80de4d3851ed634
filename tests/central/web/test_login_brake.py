"""The dashboard's login brake over real HTTP, on SQLite and PostgreSQL: parallel guessing is
counted before any password is checked, guessing cannot keep the owner out for long, and
X-Forwarded-For is believed only from a configured proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from central.api.app import create_app
from central.security import accounts
from central.security.tokens import Role
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.web.context import WebContext
from central.web.sessions import SessionSigner, load_or_create_key
from hallkit.login.brake import LoginBrake
from tests.support import logins
from tests.support.logins import serving

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
        app.state.web = WebContext(
            signer, brake, trusted_proxies=tuple(ipaddress.ip_network(p) for p in proxies)
        )
        async with serving(app) as url:
            yield url

    try:
        yield serve
    finally:
        await engine.dispose()


async def test_forty_parallel_guesses_get_five_tries_and_the_owner_still_gets_in(
    dashboard: Serve,
) -> None:
    await logins.forty_guesses_get_five_tries(dashboard, LoginBrake, "jiancha", PASSWORD)


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy(
    dashboard: Serve,
) -> None:
    await logins.forwarded_for_needs_a_configured_proxy(dashboard, LoginBrake, "jiancha")


async def test_guessing_from_many_addresses_slows_the_account_but_never_locks_it(
    dashboard: Serve,
) -> None:
    await logins.many_addresses_slow_the_account_but_never_lock_it(
        dashboard, LoginBrake, "jiancha", PASSWORD
    )
