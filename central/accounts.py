"""Login accounts for the central dashboard (监察室, 部门领导, 大厅管理员, 实施运维).

Accounts live in the ``users`` table with scrypt password hashes. A technician creates them
with ``hallwatch-central user add``; a disabled account or a changed password ends its sessions
at the next request, because every request looks the account up again.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.tokens import Principal, Role
from central.store.schema_dashboard import users
from hallkit.clock import utc_now

NAME_PATTERN = re.compile(r"^[\w.@-]{1,64}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # scrypt takes any length; this bounds the work one request can ask for

# scrypt cost: OWASP's password storage cheat sheet lists N=2^15, r=8, p=3 as equivalent to its
# baseline N=2^17, r=8, p=1 with 32 MiB instead of 128 MiB per hash, which keeps a burst of
# logins on a two-core central from exhausting memory. The parameters are stored with each
# hash, so raising them later keeps old hashes verifiable.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
SALT_BYTES = 16
HASH_BYTES = 32


class AccountError(ValueError):
    """A name, password or scope that cannot be used; the message is for the technician."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    hall: str | None
    department: str | None
    disabled: bool
    password_hash: str

    @property
    def principal(self) -> Principal:
        return Principal(self.role, self.hall, self.department, label=self.name)

    @property
    def password_tag(self) -> str:
        """Changes whenever the password does; a session carries it."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


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


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(
            "用户名为 1–64 个字母、数字、汉字或 . @ - _ / "
            "a name is 1–64 letters, digits, '.', '@', '-' or '_'"
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


def check_scope(
    role: Role, hall: str | None, department: str | None
) -> tuple[str | None, str | None]:
    """The (hall, department) an account of ``role`` keeps; refuses a missing or stray one."""
    if role is Role.HALL_MANAGER:
        if not hall or department:
            raise AccountError(
                "大厅管理员需要 --hall，且不带 --department / "
                "a hall manager needs --hall and no --department"
            )
        return hall, None
    if role is Role.DEPARTMENT_LEADER:
        if not department or hall:
            raise AccountError(
                "部门领导需要 --department，且不带 --hall / "
                "a department leader needs --department and no --hall"
            )
        return None, department
    if hall or department:
        raise AccountError(
            "监察室和运维账号覆盖全部大厅，不带 --hall/--department / "
            "supervisor and technician accounts take no --hall or --department"
        )
    return None, None


def _account(row: Any) -> Account:
    return Account(
        name=row.name,
        role=Role(row.role),
        hall=row.hall_id,
        department=row.department,
        disabled=row.disabled,
        password_hash=row.password_hash,
    )


async def get(engine: AsyncEngine, name: str) -> Account | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.name == name))).first()
    return None if row is None else _account(row)


async def all_accounts(engine: AsyncEngine) -> list[Account]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(users).order_by(users.c.name))).all()
    return [_account(r) for r in rows]


async def add(
    engine: AsyncEngine,
    name: str,
    password: str,
    role: Role,
    *,
    hall: str | None = None,
    department: str | None = None,
) -> Account:
    """Create an account; AccountError if the name is taken or anything is unusable."""
    check_name(name)
    check_new_password(password)
    hall, department = check_scope(role, hall, department)
    encoded = await asyncio.to_thread(hash_password, password)
    now = utc_now()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(users).values(
                    name=name,
                    password_hash=encoded,
                    role=role.value,
                    hall_id=hall,
                    department=department,
                    disabled=False,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        raise AccountError(f"用户 {name} 已存在 / user {name!r} exists") from None
    return Account(name, role, hall, department, False, encoded)


async def set_password(engine: AsyncEngine, name: str, password: str) -> None:
    check_new_password(password)
    encoded = await asyncio.to_thread(hash_password, password)
    await _update(engine, name, password_hash=encoded)


async def set_disabled(engine: AsyncEngine, name: str, disabled: bool) -> None:
    await _update(engine, name, disabled=disabled)


async def _update(engine: AsyncEngine, name: str, **values: object) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(users).where(users.c.name == name).values(**values, updated_at=utc_now())
        )
    if result.rowcount == 0:
        raise AccountError(f"没有用户 {name} / no user {name!r}")


async def verify(engine: AsyncEngine, name: str, password: str) -> Account | None:
    """The enabled account if the password is right, else None. scrypt runs in a thread."""
    account = await get(engine, name) if NAME_PATTERN.fullmatch(name) else None
    if len(password) > MAX_PASSWORD:
        return None
    encoded = account.password_hash if account else _dummy_hash()
    ok = await asyncio.to_thread(check_password, password, encoded)
    if not ok or account is None or account.disabled:
        return None
    return account
