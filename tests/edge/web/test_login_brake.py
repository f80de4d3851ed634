"""The hall page's login brake over real HTTP: parallel guessing is counted before any password
is checked, guessing cannot keep the owner out for long, and X-Forwarded-For is believed only
from a configured proxy."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from edge.clock import Clock
from edge.hallboard import BoardSources, HallBoard
from edge.journal import Journal
from edge.web import accounts as accounts_module
from edge.web.accounts import AccountStore
from edge.web.app import create_app
from edge.web.sessions import LoginBrake, SessionSigner, load_or_create_key
from tests.support.logins import OTHER_PEER, attempt, client, parallel_guesses, serving

PASSWORD = "viewer-password"
Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "SCRYPT_N", 2**10)


@pytest.fixture
async def hall_page(tmp_path: Path) -> AsyncIterator[Serve]:
    """Serves a hall page with the given brake and trusted proxies."""
    async with Journal(tmp_path / "journal.db", Clock(assume_synced=True)) as journal:
        board = HallBoard(BoardSources(journal, journal.clock), hall="H1", gateway="gw1")
        await board.start()
        accounts = AccountStore.in_data_dir(tmp_path)
        accounts.set_password("dating", PASSWORD)
        signer = SessionSigner(load_or_create_key(tmp_path), accounts, 3600)

        @asynccontextmanager
        async def serve(brake: LoginBrake, proxies: tuple[str, ...] = ()
                        ) -> AsyncIterator[str]:
            app = create_app(board, accounts, signer, brake=brake, trusted_proxies=tuple(
                ipaddress.ip_network(p) for p in proxies))
            async with serving(app) as url:
                yield url

        try:
            yield serve
        finally:
            await board.stop()


async def test_forty_parallel_guesses_get_five_tries_and_the_owner_still_gets_in(
    hall_page: Serve,
) -> None:
    async with hall_page(LoginBrake(pair_limit=5)) as url:
        statuses = await parallel_guesses(url, "dating", 40)
        assert statuses == {401: 5, 429: 35}, statuses
        async with client(url) as c:  # the guessing address waits, with the right one too
            assert (await attempt(c, "dating", PASSWORD)).status_code == 429
        async with client(url, OTHER_PEER) as c:  # the owner elsewhere is not held up
            assert (await attempt(c, "dating", PASSWORD)).status_code == 303


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy(
    hall_page: Serve,
) -> None:
    def spoofed(i: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"10.9.{i // 200}.{i % 200 + 1}"}

    async with hall_page(LoginBrake(pair_limit=5, address_limit=20)) as url:
        # no proxy configured: forty invented addresses are still the one real peer
        assert await parallel_guesses(url, "dating", 40, spoofed) == {401: 5, 429: 35}


async def test_guessing_from_many_addresses_slows_the_account_but_never_locks_it(
    hall_page: Serve,
) -> None:
    def behind_proxy(i: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"203.0.113.{i + 1}, 127.0.0.1"}

    brake = LoginBrake(pair_limit=5, address_limit=20, account_limit=10, account_spacing_s=1.0)
    async with hall_page(brake, proxies=("127.0.0.1/32",)) as url:
        statuses = await parallel_guesses(url, "dating", 40, behind_proxy)
        # forty addresses, each under its own limits: the account's limit holds them to ten
        # tries, plus at most one per spacing interval while the burst lasts
        assert statuses[401] <= 11 and statuses[401] + statuses[429] == 40, statuses
        started = time.monotonic()
        async with client(url) as c:
            while True:  # the owner, from an address of their own, is slowed, not locked out
                reply = await attempt(c, "dating", PASSWORD,
                                      **{"X-Forwarded-For": "198.51.100.7"})
                if reply.status_code == 303:
                    break
                assert reply.status_code == 429
                await asyncio.sleep(0.2)
        assert time.monotonic() - started < 1.0 + 5  # one spacing, and slack for a slow host
