"""Who is logged in, and (for administrators) which local accounts exist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from edge.web.accounts import PERMISSIONS, Permission
from edge.web.deps import context, require
from edge.web.sessions import Session

router = APIRouter()


@router.get("/api/session")
async def current_session(
    session: Annotated[Session, Depends(require(Permission.VIEW))],
) -> dict[str, Any]:
    account = session.account
    return {
        "user": account.name,
        "role": account.role.value,
        "permissions": sorted(p.value for p in PERMISSIONS[account.role]),
        "expires_utc": datetime.fromtimestamp(session.expires, UTC).isoformat(),
    }


@router.get("/api/accounts")
async def list_accounts(
    request: Request, _: Annotated[Session, Depends(require(Permission.MANAGE))]
) -> list[dict[str, str]]:
    return [
        {"name": a.name, "role": a.role.value, "created_utc": a.created_utc}
        for a in sorted(context(request).accounts.accounts().values(), key=lambda a: a.name)
    ]
