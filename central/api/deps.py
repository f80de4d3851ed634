"""Shared API dependencies: the database engine and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from central.auth import Principal, resolve
from central.web.context import cookie_principal

_bearer = HTTPBearer(auto_error=False, description="token from `hallwatch-central token create`")


def engine(request: Request) -> AsyncEngine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        who = await cookie_principal(request)  # the dashboard's login session, CSRF-checked
        if who is not None:
            return who
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "需要登录令牌 / bearer token required",
                            headers={"WWW-Authenticate": "Bearer"})
    who = await resolve(engine(request), credentials.credentials)
    if who is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "令牌无效 / invalid or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    return who


Engine = Annotated[AsyncEngine, Depends(engine)]
Caller = Annotated[Principal, Depends(principal)]


def require_hall(who: Principal, hall: str | None) -> str | None:
    """Narrow a hall filter to the caller's scope; refuse a hall outside it."""
    if who.role.value == "department_leader":
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "部门领导只能查看本部门办件 / raw hall data is outside your scope")
    if who.role.value == "hall_manager":
        if hall is not None and hall != who.hall:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看该大厅 / not your hall")
        return who.hall
    if who.role.value in ("supervisor", "technician"):
        return hall
    # a role added later sees nothing until someone decides what it may see
    raise HTTPException(status.HTTP_403_FORBIDDEN, "角色无权 / role not allowed here")
