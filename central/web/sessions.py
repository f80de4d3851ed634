"""Dashboard login sessions on the shared login kit (``hallkit.login``): the cookies' names,
the key file, and what a session is here (an account of the ``users`` table with its CSRF
token).

The session cookie (HttpOnly, SameSite=Strict) is signed under a key kept in central's data
directory. Nothing is held in memory: any aggregator process with the key accepts it, and a
disabled account or a changed password ends its sessions at the next request, because the
account is looked up every time.

CSRF: a state-changing request made with the cookie must carry the CSRF token in the
``X-CSRF-Token`` header (the page reads it from a second, script-readable cookie; a form posts
it as a field). The token is inside the signed session, so a cookie planted by a sibling site
cannot forge a matching pair. A request whose ``Origin`` names another site is refused as well.
Bearer-token callers need neither: browsers never attach a bearer token on their own.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from central.security import accounts
from central.security.accounts import Account
from central.security.tokens import Principal
from hallkit.login import csrf, sessions

SESSION_COOKIE = "hw_central_session"  # not the gateway page's name: both may run on one host
CSRF_COOKIE = "hw_central_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
KEY_FILE = "web-session.key"


def load_or_create_key(data_dir: Path) -> bytes:
    return sessions.load_or_create_key(data_dir, KEY_FILE)


@dataclass(frozen=True, slots=True)
class Session:
    account: Account
    csrf: str  # the token state-changing requests must echo

    @property
    def principal(self) -> Principal:
        return self.account.principal


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a fresh login hands the browser."""

    cookie: str
    csrf: str
    max_age: int


class SessionSigner:
    def __init__(
        self, key: bytes, lifetime_s: float = 12 * 3600, clock: Callable[[], float] = time.time
    ) -> None:
        self._cookies = sessions.CookieSigner(key, lifetime_s, clock)
        self.lifetime_s = lifetime_s

    def issue(self, account: Account) -> Ticket:
        token = csrf.new_token()
        cookie = self._cookies.issue(account.name, account.password_tag, token)
        return Ticket(cookie, token, int(self.lifetime_s))

    def open(self, cookie: str | None) -> sessions.SessionClaims | None:
        """The claims of an authentic, unexpired cookie that carries a CSRF token."""
        claims = self._cookies.open(cookie)
        return claims if claims is not None and claims.csrf is not None else None


async def check(request: Request, signer: SessionSigner) -> Session | None:
    """The session of the request's cookie, or None (absent, forged, expired, account disabled
    or removed, password changed). Cached on the request."""
    if hasattr(request.state, "hw_session"):
        cached: Session | None = request.state.hw_session
        return cached
    session = None
    claims = signer.open(request.cookies.get(SESSION_COOKIE))
    if claims is not None and claims.csrf is not None:
        account = await accounts.get(request.app.state.engine, claims.name)
        if (
            account is not None
            and not account.disabled
            and hmac.compare_digest(account.password_tag, claims.password_tag)
        ):
            session = Session(account, claims.csrf)
    request.state.hw_session = session
    return session
