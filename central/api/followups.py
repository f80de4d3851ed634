"""Bad-review follow-up (差评整改): list, inspect, and move items along
(assign → verify → rectify → call back → close; an unfounded review goes verify → call back).

Hall managers act on their hall's items, department leaders on their department's, supervisors
on all; technicians have no access. A step the state machine does not allow answers 409 with
the reason, Chinese first.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from central.api.correlation_scope import scope_of
from central.api.deps import Engine, FollowUpCaller
from central.correlation import followups as store
from central.correlation.store import lock_for_write
from central.reporting.names import STAFF_NAME_DOC, Names, names_for
from central.reporting.registry import HALL_NAME_DOC
from central.rules.followup import FollowUpError, FollowUpState
from central.rules.workdays import business_date
from central.security.access import Area
from central.security.tokens import Principal
from central.store.schema_correlation import followups

router = APIRouter(prefix="/api/v1", tags=["follow-up"])
NOT_FOUND = "整改事项不存在 / no such follow-up item"
REASONS = {3: "服务态度不好", 4: "办理时间太长", 5: "业务不熟", 6: "其他"}


class FollowUpOut(BaseModel):
    item_id: str
    evaluation: str = Field(description="gateway:seq of the evaluation")
    reason: int = Field(description="evaluator key 3–6")
    reason_label: str
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int
    staff: str | None
    staff_name: str | None = Field(description=STAFF_NAME_DOC)
    case_no: str | None
    department: str | None
    evaluated_at: dt.datetime
    created_at: dt.datetime
    due: dt.date = Field(description="to be closed by the end of this business day")
    state: FollowUpState
    state_label: str
    assignee: str | None
    founded: bool | None
    escalation_level: int
    overdue: bool
    closed_at: dt.datetime | None
    closed_late: bool | None


class FollowUpEventOut(BaseModel):
    kind: str
    at: dt.datetime
    state: str
    actor: str | None
    note: str
    level: int | None
    assignee: str | None
    founded: bool | None


class FollowUpDetail(BaseModel):
    item: FollowUpOut
    events: list[FollowUpEventOut]


class StepIn(BaseModel):
    note: str = Field(default="", max_length=2000)


class AssignIn(StepIn):
    assignee: str = Field(min_length=1, max_length=128)


class VerifyIn(StepIn):
    founded: bool = Field(description="was the complaint borne out (属实)?")


def _out(row: Any, now: dt.datetime, names: Names) -> FollowUpOut:
    state = FollowUpState(row.state)
    return FollowUpOut(
        item_id=row.item_id,
        evaluation=f"{row.gateway_id}:{row.seq}",
        reason=row.reason,
        reason_label=REASONS.get(row.reason, str(row.reason)),
        hall=row.hall_id,
        hall_name=names.hall(row.hall_id),
        window=row.window,
        staff=row.staff,
        staff_name=names.person(row.hall_id, row.staff),
        case_no=row.case_no,
        department=row.department,
        evaluated_at=row.evaluated_at,
        created_at=row.created_at,
        due=row.due,
        state=state,
        state_label=state.label,
        assignee=row.assignee,
        founded=row.founded,
        escalation_level=row.escalation_level,
        overdue=state is not FollowUpState.CLOSED and business_date(now) > row.due,
        closed_at=row.closed_at,
        closed_late=None if row.closed_at is None else business_date(row.closed_at) > row.due,
    )


def _scoped(query: Any, who: Principal, hall: str | None) -> Any:
    scope = scope_of(who, hall, Area.FOLLOWUP)
    query = query.where(scope.narrow(followups.c.hall_id))
    if scope.department is not None:
        query = query.where(followups.c.department == scope.department)
    return query


@router.get(
    "/followups",
    response_model=list[FollowUpOut],
    summary="Bad-review follow-up items (差评整改), oldest first",
)
async def list_followups(
    db: Engine,
    who: FollowUpCaller,
    hall: str | None = None,
    state: FollowUpState | None = None,
    overdue: Annotated[bool | None, Query(description="only overdue (or only not)")] = None,
    open_only: Annotated[bool, Query(alias="open", description="not closed")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[FollowUpOut]:
    now = dt.datetime.now(dt.UTC)
    query = _scoped(select(followups), who, hall).order_by(
        followups.c.created_at, followups.c.item_id
    )
    if state is not None:
        query = query.where(followups.c.state == state.value)
    if open_only:
        query = query.where(followups.c.state != FollowUpState.CLOSED.value)
    if overdue is True:
        query = query.where(store.overdue_clause(now))
    async with db.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).all()
        names = await names_for(conn, (r.hall_id for r in rows))
    items = [_out(r, now, names) for r in rows]
    return [i for i in items if overdue is None or i.overdue is overdue]


@router.get(
    "/followups/overdue",
    response_model=list[FollowUpOut],
    summary="Overdue follow-up items (逾期未办结), most escalated first",
)
async def list_overdue(
    db: Engine, who: FollowUpCaller, hall: str | None = None
) -> list[FollowUpOut]:
    now = dt.datetime.now(dt.UTC)
    query = (
        _scoped(select(followups), who, hall)
        .where(store.overdue_clause(now))
        .order_by(followups.c.escalation_level.desc(), followups.c.due, followups.c.item_id)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
        names = await names_for(conn, (r.hall_id for r in rows))
    return [_out(r, now, names) for r in rows]


async def _detail(conn: Any, row: Any) -> FollowUpDetail:
    events = await store.history(conn, row.item_id)
    names = await names_for(conn, [row.hall_id])
    return FollowUpDetail(
        item=_out(row, dt.datetime.now(dt.UTC), names),
        events=[
            FollowUpEventOut(
                kind=e.kind,
                at=e.at,
                state=e.state,
                actor=e.actor,
                note=e.note,
                level=e.level,
                assignee=e.assignee,
                founded=e.founded,
            )
            for e in events
        ],
    )


@router.get(
    "/followups/{item_id}",
    response_model=FollowUpDetail,
    summary="One follow-up item with its history",
)
async def get_followup(item_id: str, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    query = _scoped(select(followups), who, None).where(followups.c.item_id == item_id)
    async with db.connect() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            raise HTTPException(404, NOT_FOUND)
        return await _detail(conn, row)


async def _step(
    db: Any, who: Principal, item_id: str, action: str, body: StepIn, **kwargs: Any
) -> FollowUpDetail:
    query = _scoped(select(followups.c.item_id), who, None).where(followups.c.item_id == item_id)
    actor = f"{who.role.value}:{who.label or '-'}"
    async with db.begin() as conn:
        await lock_for_write(conn)
        if (await conn.execute(query)).first() is None:
            raise HTTPException(404, NOT_FOUND)
        try:
            row = await store.transition(
                conn,
                item_id,
                action,
                at=dt.datetime.now(dt.UTC),
                actor=actor,
                note=body.note,
                **kwargs,
            )
        except FollowUpError as exc:
            raise HTTPException(409, str(exc)) from None
        assert row is not None
        return await _detail(conn, row)


@router.post(
    "/followups/{item_id}/assign",
    response_model=FollowUpDetail,
    summary="分派: hand the item to the person responsible",
)
async def assign(item_id: str, body: AssignIn, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    return await _step(db, who, item_id, "assign", body, assignee=body.assignee)


@router.post(
    "/followups/{item_id}/verify",
    response_model=FollowUpDetail,
    summary="核实: was the complaint borne out?",
)
async def verify(item_id: str, body: VerifyIn, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    return await _step(db, who, item_id, "verify", body, founded=body.founded)


@router.post(
    "/followups/{item_id}/rectify",
    response_model=FollowUpDetail,
    summary="整改: what was changed (founded reviews only)",
)
async def rectify(item_id: str, body: StepIn, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    return await _step(db, who, item_id, "rectify", body)


@router.post(
    "/followups/{item_id}/call-back",
    response_model=FollowUpDetail,
    summary="回访: the citizen was told the outcome",
)
async def call_back(item_id: str, body: StepIn, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    return await _step(db, who, item_id, "call_back", body)


@router.post(
    "/followups/{item_id}/close", response_model=FollowUpDetail, summary="办结: close the item"
)
async def close(item_id: str, body: StepIn, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    return await _step(db, who, item_id, "close", body)
