"""Login sessions for the hall page: a signed cookie, and a brake on password guessing.

The cookie carries the account name, an expiry and a tag of the account's password hash,
signed with HMAC-SHA256 under a key kept in the data directory. Nothing is held in memory, so a
kiosk stays logged in across gateway restarts; a changed password or a removed account ends
its sessions at the next request, because the tag (or the account) no longer matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.web.accounts import Account, AccountStore

COOKIE = "hw_session"
KEY_FILE = "hall-session.key"
KEY_BYTES = 32


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
    expires: float  # Unix time


class SessionSigner:
    def __init__(self, key: bytes, accounts: AccountStore, lifetime_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.accounts = accounts
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, account: Account) -> str:
        payload = json.dumps({"u": account.name, "p": account.password_tag,
                              "e": int(self._clock() + self.lifetime_s)},
                             separators=(",", ":"), ensure_ascii=False).encode()
        body = _b64(payload)
        return f"v1.{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"v1.{body}".encode(), hashlib.sha256).digest())

    def check(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for, or None (forged, expired, password changed)."""
        if not cookie:
            return None
        try:
            version, body, signature = cookie.split(".")
        except ValueError:
            return None
        if version != "v1" or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            name, tag, expires = str(payload["u"]), str(payload["p"]), float(payload["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < self._clock():
            return None
        account = self.accounts.get(name)
        if account is None or not hmac.compare_digest(account.password_tag, tag):
            return None
        return Session(account, expires)


class LoginThrottle:
    """After ``limit`` failed logins within ``window_s`` for one name or from one address,
    further attempts are refused (before any password is checked) until the window passes."""

    def __init__(self, limit: int = 5, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, name: str, address: str) -> int:
        """Seconds until this name and address may try again; 0: now."""
        wait = 0.0
        for key in (f"name:{name}", f"addr:{address}"):
            times = self._recent(key)
            if len(times) >= self.limit:
                wait = max(wait, times[-self.limit] + self.window_s - self._clock())
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        for key in (f"name:{name}", f"addr:{address}"):
            self._recent(key).append(now)
        if len(self._failures) > 10_000:  # bound memory against a spray of names
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]

    def succeeded(self, name: str) -> None:
        # the address keeps its count: one good account must not reset guessing at others
        self._failures.pop(f"name:{name}", None)
