"""Login sessions for the hall page: a signed cookie, and a brake on password guessing
(kept in step with central's copy in central/web/sessions.py).

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
    def __init__(
        self,
        key: bytes,
        accounts: AccountStore,
        lifetime_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.accounts = accounts
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, account: Account) -> str:
        payload = json.dumps(
            {
                "u": account.name,
                "p": account.password_tag,
                "e": int(self._clock() + self.lifetime_s),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
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
