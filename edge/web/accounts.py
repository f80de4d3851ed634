"""Local accounts for the hall page: hall managers (大厅管理员) log in on the gateway itself.

Accounts live in one JSON file in the gateway's data directory, readable by the gateway only,
with passwords hashed by scrypt. Technicians set them with ``hallwatch-edge user add NAME``; the
running gateway picks up changes without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hallkit.clock import utc_now

ACCOUNTS_FILE = "hall-accounts.json"
NAME_PATTERN = re.compile(r"^[\w.-]{1,32}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256  # scrypt takes any length; this bounds the work a request can ask for

# scrypt cost: OWASP's password storage cheat sheet lists N=2^15, r=8, p=3 as equal to its
# baseline N=2^17, r=8, p=1 while needing 32 MiB instead of 128 MiB, which matters on a
# Raspberry Pi serving a login while it journals device events. Stored with each hash, so a
# later change of parameters keeps old hashes verifiable.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
SALT_BYTES = 16
HASH_BYTES = 32


class Role(StrEnum):
    VIEWER = "viewer"  # 只读: sees the hall page (the default)
    ADMIN = "admin"  # 管理: may also manage what the page one day lets a manager change


class Permission(StrEnum):
    VIEW = "view"
    MANAGE = "manage"


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.ADMIN: frozenset({Permission.VIEW, Permission.MANAGE}),
}


class AccountError(ValueError):
    """A name or password that cannot be used; the message is for the technician."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    password: str  # the encoded scrypt hash
    created_utc: str

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    @property
    def password_tag(self) -> str:
        """Changes whenever the password does: sessions carry it, so a new password (or a
        removed account) ends every session made with the old one."""
        return hashlib.sha256(self.password.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


@functools.cache
def _dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(
            "用户名只能由 1–32 个字母、数字、汉字、'.'、'-'、'_' 组成 / "
            "a name is 1–32 letters, digits, '.', '-' or '_'"
        )
    return name


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(
            f"密码至少 {MIN_PASSWORD} 个字符 / a password needs at least {MIN_PASSWORD} characters"
        )
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"密码最多 {MAX_PASSWORD} 个字符 / at most {MAX_PASSWORD} characters")
    return password


class AccountStore:
    """The accounts file; re-read whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, Account] = {}
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AccountStore:
        return cls(data_dir / ACCOUNTS_FILE)

    def accounts(self) -> dict[str, Account]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._cache, self._stamp = {}, None
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._cache = {
                a["name"]: Account(
                    a["name"], Role(a["role"]), a["password"], a.get("created_utc", "")
                )
                for a in data.get("accounts", [])
            }
            self._stamp = stamp
        return self._cache

    def get(self, name: str) -> Account | None:
        return self.accounts().get(name)

    def verify(self, name: str, password: str) -> Account | None:
        """The account if the password is right. Slow on purpose (scrypt): call it off the
        event loop."""
        account = self.get(name)
        if len(password) > MAX_PASSWORD:
            return None
        ok = check_password(password, account.password if account else _dummy_hash())
        return account if ok and account is not None else None

    def set_password(self, name: str, password: str, role: Role | None = None) -> bool:
        """Create the account or give it a new password (and role); True if it was created."""
        check_name(name)
        check_new_password(password)
        accounts = dict(self.accounts())
        old = accounts.get(name)
        accounts[name] = Account(
            name,
            role or (old.role if old else Role.VIEWER),
            hash_password(password),
            old.created_utc if old else utc_now().isoformat(timespec="seconds"),
        )
        self._write(accounts)
        return old is None

    def remove(self, name: str) -> bool:
        accounts = dict(self.accounts())
        if accounts.pop(name, None) is None:
            return False
        self._write(accounts)
        return True

    def _write(self, accounts: dict[str, Account]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": 1,
            "accounts": [
                {
                    "name": a.name,
                    "role": a.role.value,
                    "password": a.password,
                    "created_utc": a.created_utc,
                }
                for a in sorted(accounts.values(), key=lambda a: a.name)
            ],
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, indent=1)
            out.flush()
            os.fsync(out.fileno())
        _give_to_directory_owner(tmp)
        tmp.replace(self.path)


def _give_to_directory_owner(path: Path) -> None:
    """A technician runs the command as root; the gateway (user hallwatch) must read the file."""
    if os.geteuid() != 0:
        return
    st = path.parent.stat()
    with contextlib.suppress(OSError):
        os.chown(path, st.st_uid, st.st_gid)
