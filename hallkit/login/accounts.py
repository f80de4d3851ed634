"""What every login account has, on either side: a name under one rule and a password kept as
a salted scrypt hash. Where accounts are stored and which roles they have is each side's own
(central: the ``users`` table; the gateway: a JSON file in its data directory)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets

# Letters (also Chinese), digits, '.', '@', '-', '_': the union of what either side accepted,
# within the shorter length (the hall page's 32).
NAME_PATTERN = re.compile(r"^[\w.@-]{1,32}$")
MAX_PASSWORD = 256  # scrypt takes any length; this bounds the work one request can ask for

# scrypt cost: OWASP's password storage cheat sheet lists N=2^15, r=8, p=3 as equivalent to its
# baseline N=2^17, r=8, p=1 with 32 MiB instead of 128 MiB per hash, which keeps a burst of
# logins on a two-core central, or on a Raspberry Pi journaling device events, from exhausting
# memory. The parameters are stored with each hash, so raising them later keeps old hashes
# verifiable.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
SALT_BYTES = 16
HASH_BYTES = 32


class AccountError(ValueError):
    """A name, password or scope that cannot be used; the message is for the technician."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = HASH_BYTES) -> bytes:
    # scrypt needs 128·n·r bytes; hashlib's default ceiling (32 MiB) is just below that
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=132 * n * r + (1 << 20),
        dklen=length,
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def password_matches(password: str, encoded: str | None) -> bool:
    """True if ``password`` is the one ``encoded`` was made from; ``None`` (no such account)
    costs a hash all the same. Slow on purpose (scrypt): call it off the event loop."""
    if len(password) > MAX_PASSWORD:
        return False
    ok = check_password(password, encoded if encoded is not None else _dummy_hash())
    return ok and encoded is not None


def password_tag(encoded: str) -> str:
    """Changes whenever the password does: sessions carry it, so a new password ends every
    session made with the old one."""
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(
            "用户名为 1–32 个字母、数字、汉字或 . @ - _ / "
            "a name is 1–32 letters, digits, '.', '@', '-' or '_'"
        )
    return name


def check_new_password(password: str, minimum: int) -> str:
    """``password`` if it is at least ``minimum`` and at most MAX_PASSWORD characters long."""
    if len(password) < minimum:
        raise AccountError(
            f"密码至少 {minimum} 个字符 / a password needs at least {minimum} characters"
        )
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"密码最多 {MAX_PASSWORD} 个字符 / at most {MAX_PASSWORD} characters")
    return password
