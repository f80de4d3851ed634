"""差评 work orders (差评整改): list, inspect, and move orders along
(assign → verify → rectify → call back → close; an unfounded review goes verify → call back;
at 核实 the hall or department may appeal 误评 / 恶意差评, which only a supervisor decides).

Hall managers act on their hall's orders, department leaders on their department's,
supervisors on all; technicians have no access. Appeals are filed by hall managers and
department leaders and decided by supervisors. A step the state machine does not allow
answers 409 with the reason, Chinese first.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from central.api.correlation_scope import calendar_for, scope_of
from central.api.deps import AppealDecider, AppealFiler, Engine, FollowUpCaller, HallQuery
from central.correlation import followups as store
from central.correlation.store import lock_for_write
from central.reporting.names import STAFF_NAME_DOC, Names, names_for
from central.reporting.registry import HALL_NAME_DOC
from central.rules.followup import (
    TIMED_STAGES,
    AppealGround,
    CallBackAnswer,
    FollowUpError,
    FollowUpState,
    Stage,
    stage_of,
    waits_on_hall,
)
from central.rules.scale import NationalLevel
from central.rules.workdays import business_date
from central.security.access import Area
from central.security.tokens import Principal
from central.store.schema_correlation import followups
from protocols.topics import ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["follow-up"])
NOT_FOUND = "差评工单不存在 / no such work order"
# FU-<gateway>-<seq> (central.correlation.followups.item_id): checked before the store
ItemId = Annotated[str, Path(pattern=f"^FU-{ID_PATTERN}-[0-9]{{1,20}}$", description="工单编号")]
REASONS = {3: "服务态度不好", 4: "办理时间太长", 5: "业务不熟", 6: "其他"}


class StageOut(BaseModel):
    stage: Stage
    label: str = Field(description="核实 / 整改 / 回访")
    due: dt.date | None = Field(description="due day; null until the stage starts")
    done_at: dt.datetime | None
    on_time: bool | None = Field(description="finished by its due day; null while open")
    overdue: bool = Field(description="open and past its due day")


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
    stage: Stage = Field(description="verify 核实 / rectify 整改 / call_back 回访 / appeal / done")
    stage_label: str
    stages: list[StageOut] = Field(description="each timed stage's due day and end")
    level: int = Field(description="national level (1 非常不满意, 2 不满意) that opened it")
    level_label: str
    tag: str | None = Field(description="差评原因 tag")
    mapping_version: str | None
    answer: CallBackAnswer | None = Field(description="the citizen's answer at 回访")
    answer_label: str | None
    appeal_ground: AppealGround | None
    appeal_evidence: str | None = Field(description="sha256 of the evidence in the vault")
    appeal_upheld: bool | None
    excluded: bool = Field(description="appeal upheld: not held against the hall")


class FollowUpEventOut(BaseModel):
    kind: str
    at: dt.datetime
    state: str
    actor: str | None
    note: str
    level: int | None
    assignee: str | None
    founded: bool | None
    stage: str | None
    ground: str | None
    evidence_sha256: str | None
    answer: str | None


class FollowUpDetail(BaseModel):
    item: FollowUpOut
    events: list[FollowUpEventOut]


class StepIn(BaseModel):
    note: str = Field(default="", max_length=2000)


class AssignIn(StepIn):
    assignee: str = Field(min_length=1, max_length=128)


class VerifyIn(StepIn):
    founded: bool = Field(description="was the complaint borne out (属实)?")


class AppealIn(StepIn):
    ground: AppealGround = Field(description="misjudged 误评 / malicious 恶意差评")
    note: str = Field(min_length=1, max_length=2000, description="grounds and evidence")
    evidence_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class DecisionIn(StepIn):
    upheld: bool = Field(description="申诉成立: the order closes and is excluded")


class CallBackIn(StepIn):
    answer: CallBackAnswer


def stages_of(row: Any, now: dt.datetime) -> list[StageOut]:
    today = business_date(now)
    ends = {
        Stage.VERIFY: row.verified_at,
        Stage.RECTIFY: row.rectified_at,
        Stage.CALL_BACK: row.called_back_at,
    }
    current = stage_of(FollowUpState(row.state), row.founded)
    out = []
    for stage in TIMED_STAGES:
        due = getattr(row, f"{stage.value}_due")
        done = ends[stage]
        out.append(
            StageOut(
                stage=stage,
                label=stage.label,
                due=due,
                done_at=done,
                on_time=None if done is None or due is None else business_date(done) <= due,
                overdue=stage is current and due is not None and today > due,
            )
        )
    return out


def _out(row: Any, now: dt.datetime, names: Names) -> FollowUpOut:
    state = FollowUpState(row.state)
    stage = stage_of(state, row.founded)
    level = NationalLevel(row.level or NationalLevel.DISSATISFIED)
    answer = None if row.answer is None else CallBackAnswer(row.answer)
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
        overdue=waits_on_hall(state) and business_date(now) > row.due,
        closed_at=row.closed_at,
        closed_late=None
        if row.closed_at is None
        else not row.excluded and business_date(row.closed_at) > row.due,
        stage=stage,
        stage_label=stage.label,
        stages=stages_of(row, now),
        level=int(level),
        level_label=level.label,
        tag=row.tag,
        mapping_version=row.mapping_version,
        answer=answer,
        answer_label=None if answer is None else answer.label,
        appeal_ground=row.appeal_ground,
        appeal_evidence=row.appeal_evidence,
        appeal_upheld=row.appeal_upheld,
        excluded=bool(row.excluded),
    )


def scoped_orders(query: Any, who: Principal, hall: str | None) -> Any:
    """``query`` narrowed to the orders ``who`` may see (and to ``hall`` if named)."""
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
    hall: HallQuery = None,
    state: FollowUpState | None = None,
    overdue: Annotated[bool | None, Query(description="only overdue (or only not)")] = None,
    open_only: Annotated[bool, Query(alias="open", description="not closed")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[FollowUpOut]:
    now = dt.datetime.now(dt.UTC)
    query = scoped_orders(select(followups), who, hall).order_by(
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
    db: Engine, who: FollowUpCaller, hall: HallQuery = None
) -> list[FollowUpOut]:
    now = dt.datetime.now(dt.UTC)
    query = (
        scoped_orders(select(followups), who, hall)
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
                stage=e.stage,
                ground=e.ground,
                evidence_sha256=e.evidence_sha256,
                answer=e.answer,
            )
            for e in events
        ],
    )


@router.get(
    "/followups/{item_id}",
    response_model=FollowUpDetail,
    summary="One follow-up item with its history",
)
async def get_followup(item_id: ItemId, db: Engine, who: FollowUpCaller) -> FollowUpDetail:
    query = scoped_orders(select(followups), who, None).where(followups.c.item_id == item_id)
    async with db.connect() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            raise HTTPException(404, NOT_FOUND)
        return await _detail(conn, row)


async def _step(
    request: Request,
    db: Any,
    who: Principal,
    item_id: str,
    action: str,
    body: StepIn,
    **kwargs: Any,
) -> FollowUpDetail:
    query = scoped_orders(select(followups.c.item_id), who, None).where(
        followups.c.item_id == item_id
    )
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
                calendar=calendar_for(request, db),
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
async def assign(
    item_id: ItemId, body: AssignIn, request: Request, db: Engine, who: FollowUpCaller
) -> FollowUpDetail:
    return await _step(request, db, who, item_id, "assign", body, assignee=body.assignee)


@router.post(
    "/followups/{item_id}/verify",
    response_model=FollowUpDetail,
    summary="核实: was the complaint borne out?",
)
async def verify(
    item_id: ItemId, body: VerifyIn, request: Request, db: Engine, who: FollowUpCaller
) -> FollowUpDetail:
    return await _step(request, db, who, item_id, "verify", body, founded=body.founded)


@router.post(
    "/followups/{item_id}/appeal",
    response_model=FollowUpDetail,
    summary="申诉 at 核实: 误评 or 恶意差评, with evidence (hall managers, department leaders)",
)
async def appeal(
    item_id: ItemId, body: AppealIn, request: Request, db: Engine, who: AppealFiler
) -> FollowUpDetail:
    return await _step(
        request,
        db,
        who,
        item_id,
        "appeal",
        body,
        ground=body.ground,
        evidence_sha256=body.evidence_sha256,
    )


@router.post(
    "/followups/{item_id}/appeal-decision",
    response_model=FollowUpDetail,
    summary="Decide an appeal (supervisors): upheld closes the order as excluded",
)
async def decide_appeal(
    item_id: ItemId, body: DecisionIn, request: Request, db: Engine, who: AppealDecider
) -> FollowUpDetail:
    return await _step(request, db, who, item_id, "decide_appeal", body, upheld=body.upheld)


@router.post(
    "/followups/{item_id}/rectify",
    response_model=FollowUpDetail,
    summary="整改: what was changed (founded reviews only)",
)
async def rectify(
    item_id: ItemId, body: StepIn, request: Request, db: Engine, who: FollowUpCaller
) -> FollowUpDetail:
    return await _step(request, db, who, item_id, "rectify", body)


@router.post(
    "/followups/{item_id}/call-back",
    response_model=FollowUpDetail,
    summary="回访: the citizen was told the outcome; their answer",
)
async def call_back(
    item_id: ItemId, body: CallBackIn, request: Request, db: Engine, who: FollowUpCaller
) -> FollowUpDetail:
    return await _step(request, db, who, item_id, "call_back", body, answer=body.answer)


@router.post(
    "/followups/{item_id}/close", response_model=FollowUpDetail, summary="办结: close the item"
)
async def close(
    item_id: ItemId, body: StepIn, request: Request, db: Engine, who: FollowUpCaller
) -> FollowUpDetail:
    return await _step(request, db, who, item_id, "close", body)
