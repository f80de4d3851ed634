"""Dashboard login sessions: a signed cookie, CSRF protection, a brake on password guessing
(kept in step with the hall page's copy in edge/web/sessions.py).

The session cookie (HttpOnly, SameSite=Strict) carries the account name, an expiry, a tag of the
account's password hash and a CSRF token, signed with HMAC-SHA256 under a key kept in central's
data directory. Nothing is held in memory: any aggregator process with the key accepts it, and
a disabled account or a changed password ends its sessions at the next request, because the
account is looked up every time.

CSRF: a state-changing request made with the cookie must carry the CSRF token in the
``X-CSRF-Token`` header (the page reads it from a second, script-readable cookie; a form posts
it as a field). The token is inside the signed session, so a cookie planted by a sibling site
cannot forge a matching pair. A request whose ``Origin`` names another site is refused as well.
Bearer-token callers need neither: browsers never attach a bearer token on their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status

from central import accounts
from central.accounts import Account
from central.security.tokens import Principal

SESSION_COOKIE = "hw_central_session"  # not the gateway page's name: both may run on one host
CSRF_COOKIE = "hw_central_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
KEY_FILE = "web-session.key"
KEY_BYTES = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def load_or_create_key(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
        if len(key) < KEY_BYTES:
            raise ValueError("session key too short")
        self._key = key
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, account: Account) -> Ticket:
        csrf = secrets.token_urlsafe(24)
        payload = json.dumps(
            {
                "u": account.name,
                "p": account.password_tag,
                "c": csrf,
                "e": int(self._clock() + self.lifetime_s),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        body = _b64(payload)
        return Ticket(f"v1.{body}.{self._sign(body)}", csrf, int(self.lifetime_s))

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"v1.{body}".encode(), hashlib.sha256).digest())

    def open(self, cookie: str | None) -> tuple[str, str, str] | None:
        """(name, password tag, csrf) of an authentic, unexpired cookie; None otherwise."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            version, body, signature = cookie.split(".")
        except ValueError:
            return None
        if version != "v1" or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            name, tag, csrf = str(payload["u"]), str(payload["p"]), str(payload["c"])
            expires = float(payload["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < self._clock():
            return None
        return name, tag, csrf


async def check(request: Request, signer: SessionSigner) -> Session | None:
    """The session of the request's cookie, or None (absent, forged, expired, account disabled
    or removed, password changed). Cached on the request."""
    if hasattr(request.state, "hw_session"):
        cached: Session | None = request.state.hw_session
        return cached
    session = None
    opened = signer.open(request.cookies.get(SESSION_COOKIE))
    if opened is not None:
        name, tag, csrf = opened
        account = await accounts.get(request.app.state.engine, name)
        if (
            account is not None
            and not account.disabled
            and hmac.compare_digest(account.password_tag, tag)
        ):
            session = Session(account, csrf)
    request.state.hw_session = session
    return session


def same_origin(request: Request) -> bool:
    """False when the request says it comes from another origin (Origin, else Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.netloc == host and parts.scheme in ("http", "https")


def require_csrf(request: Request, session: Session, submitted: str | None) -> None:
    """Refuse a state-changing cookie request without the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "跨站请求被拒绝 / cross-origin request refused"
        )
    if not submitted or not hmac.compare_digest(submitted, session.csrf):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "缺少或错误的 CSRF 令牌，请刷新页面 / missing or wrong CSRF token",
        )
