"""The hall page's login brake over real HTTP: parallel guessing is counted before any password
is checked, guessing cannot keep the owner out for long, and X-Forwarded-For is believed only
from a configured proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from edge.clock import Clock
from edge.hallboard import BoardSources, HallBoard
from edge.journal import Journal
from edge.web.accounts import AccountStore
from edge.web.app import create_app
from edge.web.sessions import SessionSigner, load_or_create_key
from hallkit.login import accounts as login_accounts
from hallkit.login.brake import LoginBrake
from tests.support import logins
from tests.support.logins import serving

PASSWORD = "viewer-password"
Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(login_accounts, "SCRYPT_N", 2**10)


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
        async def serve(brake: LoginBrake, proxies: tuple[str, ...] = ()) -> AsyncIterator[str]:
            app = create_app(
                board,
                accounts,
                signer,
                brake=brake,
                trusted_proxies=tuple(ipaddress.ip_network(p) for p in proxies),
            )
            async with serving(app) as url:
                yield url

        try:
            yield serve
        finally:
            await board.stop()


async def test_forty_parallel_guesses_get_five_tries_and_the_owner_still_gets_in(
    hall_page: Serve,
) -> None:
    await logins.forty_guesses_get_five_tries(hall_page, LoginBrake, "dating", PASSWORD)


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy(
    hall_page: Serve,
) -> None:
    await logins.forwarded_for_needs_a_configured_proxy(hall_page, LoginBrake, "dating")


async def test_guessing_from_many_addresses_slows_the_account_but_never_locks_it(
    hall_page: Serve,
) -> None:
    await logins.many_addresses_slow_the_account_but_never_lock_it(
        hall_page, LoginBrake, "dating", PASSWORD
    )
