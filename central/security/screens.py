"""大屏 devices (role ``screen``): a wall display that shows the 大屏 and nothing else.

A technician adds a screen (``hallwatch-central screen add``) and opens the printed one-time
link on it; the link turns into a long-lived cookie (no 12-hour drop: nobody types a password on
a wall). Only SHA-256 hashes of the code and the cookie are stored, like API tokens. Every
request looks the screen up again, so ``screen revoke`` refuses its very next request.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.known_places import check_scope_exists
from central.security.tokens import Principal, Role, digest
from central.store.schema_dashboard import screens
from hallkit.clock import utc_now
from hallkit.login.accounts import AccountError, check_name

ENROLL_LIFETIME = dt.timedelta(days=7)  # the link is taken to the wall within a week
CODE_PREFIX = "hwe_"
COOKIE_PREFIX = "hws_"
COOKIE_MAX_AGE_S = 10 * 365 * 24 * 3600  # "no 12-hour drop": revocation ends it instead


class ScreenError(ValueError):
    """A screen request that cannot be done; the message is for the technician."""


@dataclass(frozen=True, slots=True)
class ScreenInfo:
    name: str
    hall: str | None
    created_at: dt.datetime
    enrolled_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "enrolled" if self.enrolled_at is not None else "waiting"


def _info(row: Any) -> ScreenInfo:
    return ScreenInfo(row.name, row.hall_id, row.created_at, row.enrolled_at, row.revoked_at)


async def add(engine: AsyncEngine, name: str, hall: str | None = None) -> str:
    """Register a screen; returns its one-time enrolment code (shown once)."""
    try:
        check_name(name)
        await check_scope_exists(engine, hall, None)  # never a screen scoped to a typo
    except AccountError as exc:
        raise ScreenError(str(exc)) from None
    code = CODE_PREFIX + secrets.token_urlsafe(24)
    now = utc_now()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(screens).values(
                    name=name,
                    hall_id=hall,
                    enroll_hash=digest(code),
                    enroll_expires_at=now + ENROLL_LIFETIME,
                    created_at=now,
                )
            )
    except IntegrityError:
        raise ScreenError(f"大屏 {name} 已存在 / screen {name!r} exists") from None
    return code


async def enroll(engine: AsyncEngine, code: str) -> str | None:
    """The screen's new cookie for a valid one-time code (then used up); None otherwise."""
    if not code.startswith(CODE_PREFIX):
        return None
    cookie = COOKIE_PREFIX + secrets.token_urlsafe(32)
    now = utc_now()
    async with engine.begin() as conn:
        done = await conn.execute(
            update(screens)
            .where(
                screens.c.enroll_hash == digest(code),
                screens.c.enroll_expires_at > now,
                screens.c.revoked_at.is_(None),
            )
            .values(enroll_hash=None, enroll_expires_at=None, enrolled_at=now)
            .values(cookie_hash=digest(cookie))
        )
    return cookie if done.rowcount == 1 else None


async def resolve(engine: AsyncEngine, cookie: str | None) -> Principal | None:
    """The screen a cookie stands for; None if unknown or revoked."""
    if not cookie or not cookie.startswith(COOKIE_PREFIX):
        return None
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(screens.c.name, screens.c.hall_id).where(
                    screens.c.cookie_hash == digest(cookie), screens.c.revoked_at.is_(None)
                )
            )
        ).first()
    return None if row is None else Principal(Role.SCREEN, row.hall_id, label=row.name)


async def list_screens(engine: AsyncEngine) -> list[ScreenInfo]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(screens).order_by(screens.c.name))).all()
    return [_info(r) for r in rows]


async def revoke(engine: AsyncEngine, name: str) -> ScreenInfo:
    """Revoke a screen at once (and its unused link). Revoking twice keeps the first time."""
    async with engine.begin() as conn:
        await conn.execute(
            update(screens)
            .where(screens.c.name == name, screens.c.revoked_at.is_(None))
            .values(revoked_at=utc_now(), enroll_hash=None)
        )
        row = (await conn.execute(select(screens).where(screens.c.name == name))).first()
    if row is None:
        raise ScreenError(f"没有大屏 {name} / no screen {name!r}")
    return _info(row)


async def enrolled(engine: AsyncEngine, cookie_hashes: set[str]) -> set[str]:
    """Of these cookie hashes, those of screens still enrolled (one query for every stream)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(screens.c.cookie_hash).where(
                screens.c.cookie_hash.in_(sorted(cookie_hashes)), screens.c.revoked_at.is_(None)
            )
        )
        return {h for (h,) in rows}
