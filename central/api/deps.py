"""Shared API dependencies: the database engine and the caller's identity."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from central.security.access import REFUSED, Area, Reach, may, reach
from central.security.tokens import Principal, resolve, with_subtree
from central.web.context import cookie_principal
from protocols.topics import ID_PATTERN

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
            return await with_subtree(engine(request), who)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "需要登录令牌 / bearer token required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    who = await resolve(engine(request), credentials.credentials)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "令牌无效 / invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await with_subtree(engine(request), who)


Engine = Annotated[AsyncEngine, Depends(engine)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
Caller = Annotated[Principal, Depends(principal)]


def gate(*areas: Area) -> Any:
    """A dependency: the caller, if the access table lets their role into one of ``areas``
    (403 otherwise). Every route declares its area(s) this way."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not any(may(who, area) for area in areas):
            raise HTTPException(status.HTTP_403_FORBIDDEN, REFUSED)
        return who

    return Depends(check)


def hall_in_reach(who: Principal, area: Area, hall: str | None) -> frozenset[str] | None:
    """The halls a query may return within the caller's reach in ``area`` (None: every hall):
    ``hall`` if asked for, else the caller's hall and the halls below it; refuse a hall
    outside it."""
    found = reach(who, area)
    if found is Reach.OWN_HALL:
        if hall is not None and hall not in who.halls:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看该大厅 / not your hall")
        return frozenset({hall}) if hall is not None else who.halls
    if found is Reach.EVERY_HALL:
        return None if hall is None else frozenset({hall})
    raise HTTPException(status.HTTP_403_FORBIDDEN, REFUSED)


# the caller of a route of each area (central.security.access has the table)
HealthCaller = Annotated[Principal, gate(Area.HEALTH)]
EventsCaller = Annotated[Principal, gate(Area.EVENTS, Area.DEVICE_EVENTS)]
QuarantineCaller = Annotated[Principal, gate(Area.QUARANTINE)]
Operator = Annotated[Principal, gate(Area.OPERATE)]
CaseFeeder = Annotated[Principal, gate(Area.CASE_FEED)]
CaseReader = Annotated[Principal, gate(Area.CASES)]
EvaluationReader = Annotated[Principal, gate(Area.EVALUATIONS)]
EvidenceReader = Annotated[Principal, gate(Area.EVIDENCE)]
EvidenceRequester = Annotated[Principal, gate(Area.EVIDENCE_REQUEST)]
FeedReader = Annotated[Principal, gate(Area.FEED)]
OutboxReader = Annotated[Principal, gate(Area.OUTBOX)]
FollowUpCaller = Annotated[Principal, gate(Area.FOLLOWUP)]
AppealFiler = Annotated[Principal, gate(Area.APPEAL_FILE)]
AppealDecider = Annotated[Principal, gate(Area.APPEAL_DECIDE)]
ReviewDecider = Annotated[Principal, gate(Area.REVIEW_DECIDE)]
ReviewLogReader = Annotated[Principal, gate(Area.REVIEW_LOG)]
SetupReader = Annotated[Principal, gate(Area.HALL_SETUP)]
SetupWriter = Annotated[Principal, gate(Area.HALL_SETUP_WRITE)]
RegistryKeeper = Annotated[Principal, gate(Area.REGISTRY)]
AnomalyReader = Annotated[Principal, gate(Area.ANOMALIES)]
ComplaintCaller = Annotated[Principal, gate(Area.COMPLAINTS)]
ComplaintRouter = Annotated[Principal, gate(Area.COMPLAINT_ROUTE)]
OverviewCaller = Annotated[Principal, gate(Area.HEALTH, Area.CASES, Area.EVALUATIONS)]


# Path ids are checked like the wire's ids: anything else is a 422, never a store error.
HallId = Annotated[str, Path(pattern=f"^{ID_PATTERN}$", description="hall id")]
GatewayId = Annotated[str, Path(pattern=f"^{ID_PATTERN}$", description="gateway id")]
# a hall filter: checked before the store (PostgreSQL cannot hold a NUL: the query would fail)
HallQuery = Annotated[str | None, Query(pattern=f"^{ID_PATTERN}$", description="hall id")]
