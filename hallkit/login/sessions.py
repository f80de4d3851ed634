"""Signed session cookies: the account name, a tag of its password hash, an expiry and (where
the page uses one) a CSRF token, signed with HMAC-SHA256 under a key kept in the data
directory. Nothing is held in memory: a restarted process, or another process with the key,
accepts the cookie; the side that opens it looks the account up and compares the tag, so a
changed password or a removed account ends its sessions at the next request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hallkit.atomicfile import write_private

KEY_BYTES = 32
MAX_COOKIE = 4096  # far beyond any cookie this signer issues


def load_or_create_key(data_dir: Path, filename: str) -> bytes:
    """The signing key in ``data_dir/filename``, made (readable by its owner only) if missing."""
    path = data_dir / filename
    try:
        key = path.read_bytes()
        if len(key) >= KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(KEY_BYTES)
    write_private(path, key)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What an authentic, unexpired cookie says; the account is still to be looked up."""

    name: str
    password_tag: str
    expires: float  # Unix time
    csrf: str | None  # None: issued without one


class CookieSigner:
    def __init__(
        self, key: bytes, lifetime_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError("session key too short")
        self._key = key
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, name: str, password_tag: str, csrf: str | None = None) -> str:
        claims: dict[str, object] = {"u": name, "p": password_tag}
        if csrf is not None:
            claims["c"] = csrf
        claims["e"] = int(self._clock() + self.lifetime_s)
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        body = _b64(payload)
        return f"v1.{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"v1.{body}".encode(), hashlib.sha256).digest())

    def open(self, cookie: str | None) -> SessionClaims | None:
        """The claims of an authentic, unexpired cookie; None for anything else."""
        if not cookie or len(cookie) > MAX_COOKIE:
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
            csrf = str(payload["c"]) if "c" in payload else None
        except (ValueError, KeyError, TypeError):
            return None
        if expires < self._clock():
            return None
        return SessionClaims(name, tag, expires, csrf)
