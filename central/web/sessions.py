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
import ipaddress
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status

from central import accounts
from central.accounts import Account
from central.auth import Principal

SESSION_COOKIE = "hw_central_session"  # not the gateway page's name: both may run on one host
CSRF_COOKIE = "hw_central_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
KEY_FILE = "web-session.key"
KEY_BYTES = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    def __init__(self, key: bytes, lifetime_s: float = 12 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError("session key too short")
        self._key = key
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, account: Account) -> Ticket:
        csrf = secrets.token_urlsafe(24)
        payload = json.dumps({"u": account.name, "p": account.password_tag, "c": csrf,
                              "e": int(self._clock() + self.lifetime_s)},
                             separators=(",", ":"), ensure_ascii=False).encode()
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
        if (account is not None and not account.disabled
                and hmac.compare_digest(account.password_tag, tag)):
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
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "跨站请求被拒绝 / cross-origin request refused")
    if not submitted or not hmac.compare_digest(submitted, session.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "缺少或错误的 CSRF 令牌，请刷新页面 / missing or wrong CSRF token")


class LoginBrake:
    """The brake on password guessing, counted before the password is checked.

    Every attempt takes a slot first (synchronously, so parallel requests on one event loop
    cannot all pass a check made before any of them counted) and gives it back only when it
    succeeds. Three counts, each over ``window_s``:

    - one address against one account: ``pair_limit`` tries, then that address waits;
    - one address against any account: ``address_limit`` tries, then it waits (a spray);
    - one account from anywhere: after ``account_limit`` tries the account is slowed, not
      locked: one try every ``account_spacing_s`` from any address, so that guessing from many
      addresses cannot keep its owner out for longer than that.

    Per process: with several processes an attacker gets the limits once per process."""

    def __init__(self, *, pair_limit: int = 5, address_limit: int = 20, account_limit: int = 10,
                 window_s: float = 300.0, account_spacing_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pair_limit, self.address_limit = pair_limit, address_limit
        self.account_limit, self.account_spacing_s = account_limit, account_spacing_s
        self.window_s = window_s
        self._clock = clock
        self._tries: dict[str, deque[float]] = {}
        self._slowed_until: dict[str, float] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._tries.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def admit(self, name: str, address: str) -> int:
        """Take a try for this name from this address: 0 if taken (check the password, then
        call ``succeeded`` or nothing), else the seconds to wait (nothing was counted)."""
        now = self._clock()
        pair = self._recent(f"pair:{address}\n{name}", now)
        by_address = self._recent(f"addr:{address}", now)
        account = self._recent(f"name:{name}", now)
        wait = 0.0
        for times, limit in ((pair, self.pair_limit), (by_address, self.address_limit)):
            if len(times) >= limit:
                wait = max(wait, times[-limit] + self.window_s - now)
        if not wait and len(account) >= self.account_limit:
            wait = max(0.0, self._slowed_until.get(name, 0.0) - now)
        if wait > 0:
            return int(wait) + 1
        for times in (pair, by_address, account):
            times.append(now)
        if len(account) >= self.account_limit:  # the account's next try waits its turn
            self._slowed_until[name] = now + self.account_spacing_s
        self._bound_memory(now)
        return 0

    def succeeded(self, name: str, address: str) -> None:
        """The owner is in: their own tries stop counting against the account; the address
        keeps its count (one good account must not reset guessing at others)."""
        self._tries.pop(f"pair:{address}\n{name}", None)
        self._tries.pop(f"name:{name}", None)
        self._slowed_until.pop(name, None)

    def _bound_memory(self, now: float) -> None:
        if len(self._tries) > 10_000:  # a spray of names or addresses
            for key in [k for k, v in self._tries.items()
                        if not v or v[-1] <= now - self.window_s]:
                del self._tries[key]
            for name in [n for n, t in self._slowed_until.items() if t <= now]:
                del self._slowed_until[name]


def client_address(request: Request, trusted_proxies: Sequence[IPNetwork]) -> str:
    """The address a request comes from. ``X-Forwarded-For`` counts only when the peer is one
    of the configured proxies (default none: anybody could write that header), and then the
    nearest address in it that is not itself a trusted proxy."""
    peer = request.client.host if request.client else "?"
    if not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    forwarded = [part.strip() for header in request.headers.getlist("x-forwarded-for")
                 for part in header.split(",") if part.strip()]
    for hop in reversed(forwarded):
        if not _in(hop, trusted_proxies):
            return hop if _address(hop) is not None else peer
    return peer


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in(text: str, networks: Sequence[IPNetwork]) -> bool:
    address = _address(text)
    return address is not None and any(address in net for net in networks)


def parse_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or networks (``10.0.0.1``, ``10.0.0.0/24``); ValueError names a bad one."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)
