"""Login accounts for the central dashboard (监察室, 部门领导, 大厅管理员, 实施运维).

Accounts live in the ``users`` table with scrypt password hashes. A technician creates them
with ``hallwatch-central user add``; a disabled account or a changed password ends its sessions
at the next request, because every request looks the account up again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.tokens import Principal, Role
from central.store.schema_dashboard import users
from hallkit.clock import utc_now
from hallkit.login.accounts import (
    AccountError,
    check_name,
    check_new_password,
    hash_password,
    password_matches,
    password_tag,
)

MIN_PASSWORD = 10
# Names are looked up at login up to the column's width: accounts made under the earlier,
# longer name rule can still log in.
MAX_NAME_LOOKUP = 64


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
        return password_tag(self.password_hash)


def check_scope(
    role: Role, hall: str | None, department: str | None
) -> tuple[str | None, str | None]:
    """The (hall, department) an account of ``role`` keeps; refuses a missing or stray one."""
    if role is Role.SCREEN:
        raise AccountError(
            "大屏不是登录账号，用 `screen add` / a screen is enrolled with `screen add`"
        )
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
    check_new_password(password, MIN_PASSWORD)
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
    check_new_password(password, MIN_PASSWORD)
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
    account = await get(engine, name) if 0 < len(name) <= MAX_NAME_LOOKUP else None
    encoded = account.password_hash if account else None
    ok = await asyncio.to_thread(password_matches, password, encoded)
    if not ok or account is None or account.disabled:
        return None
    return account
