"""Login sessions for the hall page on the shared login kit (``hallkit.login``): the cookie's
name, the key file, and what a session is here (an account of the gateway's accounts file).

The signed cookie is checked against the accounts file at every request. Nothing is held in
memory, so a kiosk stays logged in across gateway restarts; a changed password or a removed
account ends its sessions at the next request, because the tag (or the account) no longer
matches.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.web.accounts import Account, AccountStore
from hallkit.login import sessions

COOKIE = "hw_session"
KEY_FILE = "hall-session.key"


def load_or_create_key(data_dir: Path) -> bytes:
    return sessions.load_or_create_key(data_dir, KEY_FILE)


@dataclass(frozen=True, slots=True)
class Session:
    account: Account
    expires: float  # Unix time


class SessionSigner:
    def __init__(
        self,
        key: bytes,
        accounts: AccountStore,
        lifetime_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cookies = sessions.CookieSigner(key, lifetime_s, clock)
        self.accounts = accounts
        self.lifetime_s = lifetime_s

    def issue(self, account: Account) -> str:
        return self._cookies.issue(account.name, account.password_tag)

    def check(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for, or None (forged, expired, password changed)."""
        claims = self._cookies.open(cookie)
        if claims is None:
            return None
        account = self.accounts.get(claims.name)
        if account is None or not hmac.compare_digest(account.password_tag, claims.password_tag):
            return None
        return Session(account, claims.expires)
