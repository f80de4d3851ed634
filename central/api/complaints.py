"""Complaints (网上投诉) for staff: enter a phone or counter complaint, list and inspect them,
move them along (受理 → 办理 → 答复 → 办结, or 不予受理), hand them to a department (归口, the
supervisors), and the indicators 投诉数 and 投诉按时办结率.

Scope (central.security.access, Area.COMPLAINTS): supervisors every complaint including the
triage queue, hall managers their hall's, department leaders those routed to their department,
technicians none. A complaint outside the caller's scope answers 404, as one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from central.api.correlation_scope import FromDay, ToDay, calendar_for, period
from central.api.deps import ComplaintCaller, ComplaintRouter, Engine, HallQuery
from central.complaints import service
from central.complaints import store as complaint_store
from central.complaints.model import (
    CASE_NO,
    MAX_TEXT,
    NO_NUL,
    NUMBER,
    Channel,
    ComplaintError,
    ComplaintIn,
    ComplaintState,
    Line,
    Text,
    ack_overdue,
    answered_on_time,
    reply_overdue,
)
from central.complaints.stats import ComplaintStat, Grouping, stats
from central.correlation.store import lock_for_write
from central.reporting.names import STAFF_NAME_DOC, Names, names_for
from central.reporting.registry import HALL_NAME_DOC
from central.rules.workdays import business_date
from central.security.tokens import Principal
from central.store.schema_complaints import complaints
from hallkit.clock import utc_now

router = APIRouter(prefix="/api/v1", tags=["complaints"])
NOT_FOUND = "投诉不存在 / no such complaint"
Number = Annotated[str, Path(pattern=NUMBER, description="投诉编号")]
CHANNEL_LABELS = {"web": "网上投诉", "phone": "电话投诉", "counter": "现场投诉", "letter": "来信"}


class ComplaintOut(BaseModel):
    complaint_no: str
    channel: str
    channel_label: str
    text: str = Field(description="as typed: escape it wherever it is shown")
    hall: str | None
    hall_name: str | None = Field(description=HALL_NAME_DOC)
    window: int | None
    staff: str | None
    staff_name: str | None = Field(description=STAFF_NAME_DOC)
    staff_name_given: str | None = Field(description="the name the complainant gave")
    case_ref: str | None = Field(description="办件编号 as given")
    case_no: str | None = Field(description="the case it is tied to (the number exists)")
    happened_on: dt.date | None
    department: str | None = Field(description="归口 department; null: the triage queue")
    complainant: str | None
    phone_masked: str | None
    consent: bool
    state: ComplaintState
    state_label: str
    received_at: dt.datetime
    ack_due: dt.date
    reply_due: dt.date
    ack_overdue: bool
    overdue: bool = Field(description="open past the reply deadline")
    escalation_level: int
    reply: str | None
    reject_reason: str | None
    replied_at: dt.datetime | None
    closed_at: dt.datetime | None
    on_time: bool | None = Field(description="answered by the reply deadline; null: not yet")


class ComplaintList(BaseModel):
    count: int = Field(description="complaints matching (the list may be cut at limit)")
    items: list[ComplaintOut]


class ComplaintEventOut(BaseModel):
    seq: int
    at: dt.datetime
    action: str
    state: str
    actor: str | None
    note: str


class ComplaintDetail(BaseModel):
    complaint: ComplaintOut
    events: list[ComplaintEventOut]


class ComplaintEntry(ComplaintIn):
    channel: Literal["phone", "counter", "letter"] = Field(description="how it came in")


class Receipt(BaseModel):
    complaint_no: str
    code: str = Field(description="查询码: tell it to the complainant; it is not kept")
    reply_due: dt.date
    complaint: ComplaintOut | None = Field(
        description="null when it lies outside the caller's scope (its case number tied it to "
        "another hall or department): who owns that case is not the caller's to know"
    )


class StepIn(BaseModel):
    note: Text = Field(default="", max_length=MAX_TEXT, description="意见; the reply or reason")


class RouteIn(StepIn):
    department: Line = Field(min_length=1, max_length=128)


class ComplaintStatOut(BaseModel):
    group: str = Field(description="hall id or department; empty: unknown, or overall")
    received: int = Field(description="投诉数")
    rejected: int = Field(description="不予受理")
    open: int
    overdue: int
    due: int = Field(description="accepted complaints due or answered")
    on_time: int = Field(description="answered by the reply deadline")
    on_time_rate: float | None = Field(description="投诉按时办结率 = on_time / due")


def complaint_out(row: Any, today: dt.date, names: Names) -> ComplaintOut:
    state = ComplaintState(row.state)
    return ComplaintOut(
        complaint_no=row.complaint_no,
        channel=row.channel,
        channel_label=CHANNEL_LABELS.get(row.channel, row.channel),
        text=row.text,
        hall=row.hall_id,
        hall_name=None if row.hall_id is None else names.hall(row.hall_id),
        window=row.window,
        staff=row.staff,
        staff_name=names.person(row.hall_id, row.staff),
        staff_name_given=row.staff_name_given,
        case_ref=row.case_ref,
        case_no=row.case_no,
        happened_on=row.happened_on,
        department=row.department,
        complainant=row.complainant,
        phone_masked=row.phone_masked,
        consent=row.consent,
        state=state,
        state_label=state.label,
        received_at=row.received_at,
        ack_due=row.ack_due,
        reply_due=row.reply_due,
        ack_overdue=ack_overdue(state, row.ack_due, today),
        overdue=reply_overdue(state, row.reply_due, today),
        escalation_level=row.escalation_level,
        reply=row.reply,
        reject_reason=row.reject_reason,
        replied_at=row.replied_at,
        closed_at=row.closed_at,
        on_time=answered_on_time(row.reply_due, row.replied_on),
    )


async def _outs(conn: Any, rows: list[Any]) -> list[ComplaintOut]:
    names = await names_for(conn, [r.hall_id for r in rows if r.hall_id is not None])
    today = business_date(utc_now())
    return [complaint_out(r, today, names) for r in rows]


def _actor(who: Principal) -> str:
    return f"{who.role.value}:{who.label or '-'}"


@router.post(
    "/complaints",
    response_model=Receipt,
    status_code=status.HTTP_201_CREATED,
    summary="Enter a complaint taken by phone, at the counter or by letter (统一受理)",
)
async def enter_complaint(
    request: Request, body: ComplaintEntry, db: Engine, who: ComplaintCaller
) -> Receipt:
    given = ComplaintIn.model_validate(body.model_dump(exclude={"channel"}))
    async with db.begin() as conn:
        receipt = await complaint_store.receive(
            conn,
            given,
            channel=Channel(body.channel),
            calendar=calendar_for(request, db),
            config=service.settings(db),
            now=utc_now(),
            entered_by=_actor(who),
        )
        row = await complaint_store.find(conn, who, receipt.complaint_no)
        out = None if row is None else (await _outs(conn, [row]))[0]
    return Receipt(
        complaint_no=receipt.complaint_no, code=receipt.code, reply_due=receipt.reply_due,
        complaint=out,
    )  # fmt: skip


@router.get(
    "/complaints",
    response_model=ComplaintList,
    summary="Complaints within the caller's scope, newest first; filter by hall, staff, case",
)
async def list_complaints(
    db: Engine,
    who: ComplaintCaller,
    hall: HallQuery = None,
    staff: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
    case_no: Annotated[str | None, Query(pattern=CASE_NO)] = None,
    department: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    state: ComplaintState | None = None,
    open_only: Annotated[bool, Query(alias="open", description="待受理/已受理/办理中")] = False,
    triage: Annotated[bool, Query(description="only those not routed yet")] = False,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> ComplaintList:
    c = complaints.c
    query = select(complaints).where(complaint_store.scope_clause(who))
    for column, value in ((c.hall_id, hall), (c.staff, staff), (c.case_no, case_no)):
        if value is not None:
            query = query.where(column == value)
    if department is not None:
        query = query.where(c.department == department)
    if state is not None:
        query = query.where(c.state == state.value)
    if open_only:
        query = query.where(c.state.in_([s.value for s in ComplaintState if s.open]))
    if triage:
        query = query.where(c.department.is_(None))
    async with db.connect() as conn:
        rows = list((await conn.execute(query.order_by(c.received_at.desc()))).all())
        items = await _outs(conn, rows[:limit])
    return ComplaintList(count=len(rows), items=items)


@router.get(
    "/complaints/stats",
    response_model=list[ComplaintStatOut],
    summary="投诉数 and 投诉按时办结率 over complaints received in a range (INDICATORS.md)",
)
async def complaint_stats(
    db: Engine,
    who: ComplaintCaller,
    first: FromDay = None,
    last: ToDay = None,
    group: Grouping = "all",
    hall: HallQuery = None,
) -> list[ComplaintStatOut]:
    first, last = period(first, last)
    async with db.connect() as conn:
        found = await stats(conn, who, first, last, business_date(utc_now()), group, hall)
    return [stat_out(s) for s in found]


def stat_out(s: ComplaintStat) -> ComplaintStatOut:
    return ComplaintStatOut(
        group=s.group, received=s.received, rejected=s.rejected, open=s.open,
        overdue=s.overdue, due=s.due, on_time=s.on_time, on_time_rate=s.on_time_rate,
    )  # fmt: skip


async def _detail(conn: Any, row: Any) -> ComplaintDetail:
    (out,) = await _outs(conn, [row])
    events = await complaint_store.history(conn, row.complaint_no)
    return ComplaintDetail(
        complaint=out,
        events=[
            ComplaintEventOut(
                seq=e.seq, at=e.at, action=e.action, state=e.state, actor=e.actor, note=e.note
            )
            for e in events
        ],
    )


@router.get("/complaints/{number}", response_model=ComplaintDetail, summary="One complaint")
async def get_complaint(number: Number, db: Engine, who: ComplaintCaller) -> ComplaintDetail:
    async with db.connect() as conn:
        row = await complaint_store.find(conn, who, number)
        if row is None:
            raise HTTPException(404, NOT_FOUND)
        return await _detail(conn, row)


async def _act(db: Any, who: Principal, number: str, step: Any) -> ComplaintDetail:
    async with db.begin() as conn:
        await lock_for_write(conn)
        if await complaint_store.find(conn, who, number) is None:
            raise HTTPException(404, NOT_FOUND)
        try:
            row = await step(conn)
        except ComplaintError as exc:
            raise HTTPException(409, str(exc)) from None
        return await _detail(conn, row)


@router.post(
    "/complaints/{number}/route",
    response_model=ComplaintDetail,
    summary="归口: hand an open complaint to a department (supervisors)",
)
async def route(number: Number, body: RouteIn, db: Engine, who: ComplaintRouter) -> ComplaintDetail:

    async def step(conn: Any) -> Any:
        return await complaint_store.route(
            conn, number, body.department, at=utc_now(), actor=_actor(who), note=body.note
        )

    return await _act(db, who, number, step)


@router.post(
    "/complaints/{number}/{action}",
    response_model=ComplaintDetail,
    summary="accept (受理) | reject (不予受理, note: reason) | handle (办理) | reply (答复, "
    "note: the reply, sent by SMS where consented) | close (办结)",
    responses={409: {"description": "the complaint's state does not allow it"}},
)
async def act(
    number: Number,
    action: Literal["accept", "reject", "handle", "reply", "close"],
    body: StepIn,
    db: Engine,
    who: ComplaintCaller,
) -> ComplaintDetail:
    async def step(conn: Any) -> Any:
        return await complaint_store.transition(
            conn, number, action, at=utc_now(), actor=_actor(who), note=body.note
        )

    return await _act(db, who, number, step)
