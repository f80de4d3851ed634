"""API tokens and roles. Tokens are shown once and stored only as SHA-256; each expires (90
days unless told otherwise) and can be listed and revoked by its id, the first hex digits of
that hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting.registry_cache import halls_under
from central.store.schema import api_tokens
from hallkit.clock import utc_now

TOKEN_PREFIX = "hwt_"
DEFAULT_LIFETIME = dt.timedelta(days=90)
MAX_LIFETIME = dt.timedelta(days=3650)
ID_DIGITS = 12  # how much of the hash `token list` shows; `token revoke` takes ≥ MIN_ID_DIGITS
MIN_ID_DIGITS = 8


class Role(StrEnum):
    SUPERVISOR = "supervisor"  # 监察室: every hall
    DEPARTMENT_LEADER = "department_leader"  # 部门领导: own department's cases only
    HALL_MANAGER = "hall_manager"  # 大厅管理员: own hall only
    TECHNICIAN = "technician"  # 实施运维: gateways and devices, no personal data
    SCREEN = "screen"  # 大屏: a wall display, read-only, the wall's endpoints only (never a token)


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    hall: str | None = None
    department: str | None = None
    label: str = ""
    # the halls below ``hall`` in the registry of halls (a city's counties and their
    # townships), filled in per request by ``with_subtree``; empty: the hall alone
    below: frozenset[str] = frozenset()

    @property
    def halls(self) -> frozenset[str]:
        """The account's hall and every hall below it; empty for an account without a hall."""
        return frozenset({self.hall}) | self.below if self.hall else frozenset()

    def may_see_hall(self, hall: str) -> bool:
        if self.role in (Role.SUPERVISOR, Role.TECHNICIAN):
            return True
        return self.role is Role.HALL_MANAGER and hall in self.halls


async def with_subtree(engine: AsyncEngine, who: Principal) -> Principal:
    """``who`` reaching its hall's whole subtree, as the registry of halls has it now."""
    if not who.hall:
        return who
    async with engine.connect() as conn:
        below = await halls_under(conn, who.hall) - {who.hall}
    return replace(who, below=frozenset(below))


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What `token list` shows: never the token, only the start of its hash."""

    id: str
    role: Role
    hall: str | None
    department: str | None
    label: str
    created_at: dt.datetime
    expires_at: dt.datetime | None  # None: made before tokens expired
    revoked_at: dt.datetime | None

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "valid"


class TokenError(ValueError):
    """A token request that cannot be done; the message is for the technician."""


def digest(secret: str) -> str:
    """What is stored of a secret handed out once (API token, screen cookie, enrolment code)."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(
    engine: AsyncEngine,
    role: Role,
    *,
    hall: str | None = None,
    department: str | None = None,
    label: str = "",
    lifetime: dt.timedelta = DEFAULT_LIFETIME,
) -> str:
    if role is Role.SCREEN:
        raise TokenError("大屏用 `screen add` 登记 / a screen is enrolled with `screen add`")
    if role is Role.HALL_MANAGER and not hall:
        raise TokenError("a hall manager token needs --hall")
    if role is Role.DEPARTMENT_LEADER and not department:
        raise TokenError("a department leader token needs --department")
    if not dt.timedelta(0) < lifetime <= MAX_LIFETIME:
        raise TokenError(
            f"令牌有效期须在 1–{MAX_LIFETIME.days} 天之间 / a token lives between "
            f"a moment and {MAX_LIFETIME.days} days"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utc_now()
    async with engine.begin() as conn:
        await conn.execute(
            insert(api_tokens).values(
                token_hash=digest(token),
                role=role.value,
                hall_id=hall,
                department=department,
                label=label,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return token


async def resolve(engine: AsyncEngine, token: str) -> Principal | None:
    """The caller a token stands for; None if unknown, revoked or expired."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(api_tokens).where(api_tokens.c.token_hash == digest(token)))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utc_now():
        return None
    return Principal(Role(row.role), row.hall_id, row.department, row.label)


async def list_tokens(engine: AsyncEngine) -> list[TokenInfo]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.token_hash)
            )
        ).all()
    return [
        TokenInfo(
            r.token_hash[:ID_DIGITS],
            Role(r.role),
            r.hall_id,
            r.department,
            r.label,
            r.created_at,
            r.expires_at,
            r.revoked_at,
        )
        for r in rows
    ]


async def revoke_token(engine: AsyncEngine, token_or_id: str) -> TokenInfo:
    """Revoke one token, named by the token itself or by the id `token list` shows (at least
    eight hex digits, matching exactly one token). Revoking twice keeps the first time."""
    if token_or_id.startswith(TOKEN_PREFIX):
        match = api_tokens.c.token_hash == digest(token_or_id)
    else:
        prefix = token_or_id.strip().lower()
        if len(prefix) < MIN_ID_DIGITS or any(c not in "0123456789abcdef" for c in prefix):
            raise TokenError(
                f"令牌编号为至少 {MIN_ID_DIGITS} 位十六进制数 / a token id is at "
                f"least {MIN_ID_DIGITS} hex digits (see `token list`)"
            )
        match = api_tokens.c.token_hash.startswith(prefix, autoescape=True)
    async with engine.begin() as conn:
        rows = (await conn.execute(select(api_tokens.c.token_hash).where(match))).all()
        if len(rows) != 1:
            raise TokenError(
                "没有这个令牌 / no such token"
                if not rows
                else "编号对应多个令牌，请给出更长的编号 / the id matches several tokens; "
                "give more digits"
            )
        found = rows[0].token_hash
        await conn.execute(
            update(api_tokens)
            .where(api_tokens.c.token_hash == found, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utc_now())
        )
    return next(t for t in await list_tokens(engine) if t.id == found[:ID_DIGITS])
