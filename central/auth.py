"""API tokens and roles. Tokens are shown once and stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.store.schema import api_tokens
from protocols.envelope import utc_now

TOKEN_PREFIX = "hwt_"


class Role(StrEnum):
    SUPERVISOR = "supervisor"  # 监察室: every hall
    DEPARTMENT_LEADER = "department_leader"  # 部门领导: own department's cases only
    HALL_MANAGER = "hall_manager"  # 大厅管理员: own hall only
    TECHNICIAN = "technician"  # 实施运维: gateways and devices, no personal data


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    hall: str | None = None
    department: str | None = None
    label: str = ""

    def may_see_hall(self, hall: str) -> bool:
        if self.role in (Role.SUPERVISOR, Role.TECHNICIAN):
            return True
        return self.role is Role.HALL_MANAGER and self.hall == hall


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    engine: AsyncEngine, role: Role, *, hall: str | None = None, department: str | None = None,
    label: str = "",
) -> str:
    if role is Role.HALL_MANAGER and not hall:
        raise ValueError("a hall manager token needs --hall")
    if role is Role.DEPARTMENT_LEADER and not department:
        raise ValueError("a department leader token needs --department")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(insert(api_tokens).values(
            token_hash=_digest(token), role=role.value, hall_id=hall, department=department,
            label=label, created_at=utc_now()))
    return token


async def resolve(engine: AsyncEngine, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_tokens).where(
            api_tokens.c.token_hash == _digest(token)))).first()
    if row is None or row.revoked_at is not None:
        return None
    return Principal(Role(row.role), row.hall_id, row.department, row.label)
