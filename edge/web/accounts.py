"""Local accounts for the hall page: hall managers (大厅管理员) log in on the gateway itself.

Accounts live in one JSON file in the gateway's data directory, readable by the gateway only,
with passwords hashed by scrypt. Technicians set them with ``hallwatch-edge user add NAME``; the
running gateway picks up changes without a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hallkit.clock import utc_now
from hallkit.login.accounts import (
    check_name,
    check_new_password,
    hash_password,
    password_matches,
    password_tag,
)

ACCOUNTS_FILE = "hall-accounts.json"
MIN_PASSWORD = 8


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
        return password_tag(self.password)


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
        ok = password_matches(password, account.password if account else None)
        return account if ok else None

    def set_password(self, name: str, password: str, role: Role | None = None) -> bool:
        """Create the account or give it a new password (and role); True if it was created."""
        check_name(name)
        check_new_password(password, MIN_PASSWORD)
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
