# Long module: one resource's whole HTTP surface (its models, the approval system's feed, the
# role-scoped reads); its routes read as one.
"""Cases (办件): the approval system's feed in, the time-limit ladder out.

POST takes a batch from the approval system (supervisor or technician tokens); the GETs are
role-scoped: a department leader sees only the department's cases, a hall manager only the
hall's. A case outside the caller's scope answers exactly like a case that does not exist, so
case numbers cannot be probed. Applicant data is only ever the masked form, and technicians do
not get even that.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import and_, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.api.deps import CaseFeeder, CaseReader, Engine
from central.cases.context import CaseContext, bound
from central.cases.ladder import standing
from central.cases.model import CASE_NO_PATTERN, EARLIEST_YEAR, LATEST_YEAR, NO_NUL, CaseIn
from central.cases.mqttfeed import result_doc
from central.cases.store import MAX_BATCH, Source, clock_of, feed
from central.reporting.names import Names, names_for
from central.reporting.registry import HALL_NAME_DOC
from central.rules.indicators import CaseStatus
from central.rules.timelimit import LadderStage, steps
from central.rules.workdays import business_date, day_start
from central.security.access import Area, case_filter, may
from central.security.tokens import Principal
from central.store.schema import case_revisions, case_suspensions, cases
from central.store.schema_cases import case_ladder, case_steps
from hallkit.clock import utc_now
from protocols.devices import STAFF_PATTERN
from protocols.topics import ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["cases"])

MAX_BODY = 32 * 1024 * 1024
NOT_FOUND = "办件不存在 / no such case"
EARLIEST, LATEST = dt.date(EARLIEST_YEAR, 1, 1), dt.date(LATEST_YEAR, 12, 31)


# ------------------------------------------------------------------------------------ models


class CaseBatchIn(BaseModel):
    """A batch of cases; each row is validated on its own (a bad row does not stop the rest)."""

    cases: list[CaseIn] = Field(max_length=MAX_BATCH, description=f"≤ {MAX_BATCH} cases")


class RowResultOut(BaseModel):
    index: int = Field(description="position in the batch, from 0")
    case_no: str | None
    outcome: str = Field(description="created | unchanged | revised | rejected")
    revision: int | None
    errors: list[str] = Field(description="why a row was rejected (never the refused values)")


class BatchResultOut(BaseModel):
    received: int
    created: int
    unchanged: int
    revised: int
    rejected: int
    results: list[RowResultOut]


class LadderOut(BaseModel):
    stage: LadderStage | None = Field(description="None once the case is withdrawn (撤件)")
    label: str | None = Field(description="蓝灯（正常办理）, 黄牌（超时）, …")
    as_of: dt.date = Field(description="the business date the stage is for")
    deadline: dt.date | None = Field(description="None while the clock is stopped")
    days_over: int | None = Field(
        description="counted working days − limit: −1 one day before the deadline, 0 on it, "
        "n > 0 working days over"
    )
    overdue: bool
    limit_days: int = Field(description="承诺时限 where given, else 法定时限")
    source: str = Field(
        description="job: recorded by the ladder job; live: computed now "
        "because the job has not seen this revision yet"
    )


class SuspensionOut(BaseModel):
    start: dt.datetime
    end: dt.datetime | None
    reason: str


class CaseOut(BaseModel):
    case_no: str
    revision: int
    item_code: str
    item_name: str
    department: str
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int | None
    staff: str | None
    staff_name: str | None = Field(default=None, description="工作人员姓名 (hall setup)")
    accepted_at: dt.datetime
    legal_days: int
    promised_days: int | None
    completed_at: dt.datetime | None
    status: CaseStatus
    applicant: str | None = Field(description="masked (张* 138****5678); never for technicians")
    received_at: dt.datetime
    source: str
    ladder: LadderOut | None = Field(description="None until the ladder job has run")


class StepOut(BaseModel):
    stage: LadderStage
    label: str
    on_date: dt.date
    at: dt.datetime
    days_over: int
    revision: int = Field(description="the case revision it was derived from")
    recorded_at: dt.datetime
    superseded: bool = Field(description="a later revision of the case no longer leads here")


class CaseDetailOut(CaseOut):
    suspensions: list[SuspensionOut]
    steps: list[StepOut]


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None


class RevisionOut(BaseModel):
    revision: int
    received_at: dt.datetime
    doc: dict[str, Any] = Field(description="the case as reported (applicant masked)")


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs inlined (the body is documented, not parsed, by
    FastAPI, so its models are not in the OpenAPI components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------ scope


def _context(request: Request, engine: Any) -> CaseContext:
    context = getattr(request.app.state, "cases", None) or bound(engine)
    if context is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "办件服务未启动 / the case service is not configured",
        )
    return context


# ------------------------------------------------------------------------------------ feed


@router.post(
    "/cases",
    response_model=BatchResultOut,
    summary="Report cases (batch, idempotent)",
    description=(
        "The approval system's feed. Each row is created, unchanged (same content again), "
        "revised (changed content: a new revision, the old one kept) or rejected with its "
        f"reasons. At most {MAX_BATCH} rows. Times without an offset are Beijing time. "
        "Supervisor or technician tokens."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(CaseBatchIn)}},
        }
    },
    responses={
        413: {"description": "too many rows or too large a body"},
        422: {"description": "the body is not a JSON object with a 'cases' array"},
    },
)
async def post_cases(request: Request, db: Engine, who: CaseFeeder) -> BatchResultOut:
    # The body is parsed here rather than by FastAPI: its 422 answers echo the refused input,
    # and a row may hold a phone or ID number.
    context = _context(request, db)
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"请求过大 / body over {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPException(422, "请求体不是有效的 JSON / body is not JSON") from None
    rows = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise HTTPException(422, '需要 {"cases": [...]} / body must be {"cases": [...]}')
    if len(rows) > MAX_BATCH:
        raise HTTPException(413, f"每批最多 {MAX_BATCH} 条 / at most {MAX_BATCH} cases per request")
    results = await feed(db, rows, context.masker, source=Source.API, now=utc_now())
    return BatchResultOut.model_validate(result_doc(results))


# ------------------------------------------------------------------------------------ read


def _cursor(row: Any) -> str:
    raw = json.dumps([row.accepted_at.isoformat(), row.case_no]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _uncursor(text: str) -> tuple[dt.datetime, str]:
    try:
        accepted, case_no = json.loads(base64.urlsafe_b64decode(text.encode()))
        at = dt.datetime.fromisoformat(accepted)
        if at.utcoffset() is None or not re.match(CASE_NO_PATTERN, case_no):
            raise ValueError("not a cursor of ours")
        return at, case_no
    except (ValueError, TypeError, OverflowError) as exc:
        raise HTTPException(422, "invalid cursor") from exc


def _applicant(who: Principal, row: Any) -> str | None:
    return row.applicant_masked if may(who, Area.CASES) else None


def _ladder(row: Any, context: CaseContext, held: list[Any]) -> LadderOut | None:
    limit = row.legal_days if row.promised_days is None else row.promised_days
    if row.l_revision == row.revision:
        stage = LadderStage(row.l_stage) if row.l_stage else None
        return LadderOut(
            stage=stage,
            label=stage.label if stage else None,
            as_of=row.l_as_of,
            deadline=row.l_deadline,
            days_over=row.l_days_over,
            overdue=row.l_overdue,
            limit_days=limit,
            source="job",
        )
    today = max(business_date(utc_now()), business_date(row.accepted_at))
    try:
        now = standing(clock_of(row, held), row.status, today, context.calendar, context.ladder)
    except ValueError:  # a year the calendar does not know: the job reports it
        return None
    return LadderOut(
        stage=now.stage,
        label=now.stage.label if now.stage else None,
        as_of=today,
        deadline=now.deadline,
        days_over=now.days_over,
        overdue=now.overdue,
        limit_days=limit,
        source="live",
    )


def _case_out(
    who: Principal,
    row: Any,
    ladder: LadderOut | None,
    names: Names,
) -> dict[str, Any]:
    return {
        "case_no": row.case_no,
        "revision": row.revision,
        "item_code": row.item_code,
        "item_name": row.item_name,
        "department": row.department,
        "hall": row.hall_id,
        "hall_name": names.hall(row.hall_id),
        "window": row.window,
        "staff": row.staff,
        "staff_name": names.person(row.hall_id, row.staff),
        "accepted_at": row.accepted_at,
        "legal_days": row.legal_days,
        "promised_days": row.promised_days,
        "completed_at": row.completed_at,
        "status": row.status,
        "applicant": _applicant(who, row),
        "received_at": row.received_at,
        "source": row.source,
        "ladder": ladder,
    }


def _with_ladder() -> Any:
    lad = case_ladder.c
    return select(
        cases,
        lad.revision.label("l_revision"),
        lad.stage.label("l_stage"),
        lad.as_of.label("l_as_of"),
        lad.deadline.label("l_deadline"),
        lad.days_over.label("l_days_over"),
        lad.overdue.label("l_overdue"),
    ).outerjoin(case_ladder, lad.case_no == cases.c.case_no)


async def _suspensions(conn: AsyncConnection, numbers: list[str]) -> dict[str, list[Any]]:
    held: dict[str, list[Any]] = {n: [] for n in numbers}
    if numbers:
        for s in await conn.execute(
            select(case_suspensions)
            .where(case_suspensions.c.case_no.in_(numbers))
            .order_by(case_suspensions.c.started_at)
        ):
            held[s.case_no].append(s)
    return held


@router.get(
    "/cases",
    response_model=CasePage,
    summary="List cases with their ladder stage",
    description="Newest accepted first, keyset-paged. Filters combine; a filter outside "
    "the caller's scope simply matches nothing.",
)
async def list_cases(
    request: Request,
    db: Engine,
    who: CaseReader,
    hall: Annotated[str | None, Query(pattern=f"^{ID_PATTERN}$")] = None,
    department: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    window: Annotated[int | None, Query(ge=0, le=9999)] = None,
    staff: Annotated[str | None, Query(pattern=STAFF_PATTERN)] = None,
    stage: Annotated[LadderStage | None, Query(description="current ladder stage")] = None,
    case_status: Annotated[CaseStatus | None, Query(alias="status")] = None,
    accepted_from: Annotated[
        dt.date | None, Query(ge=EARLIEST, le=LATEST, description="受理日期 ≥ (Beijing)")
    ] = None,
    accepted_to: Annotated[
        dt.date | None, Query(ge=EARLIEST, le=LATEST, description="受理日期 ≤ (Beijing)")
    ] = None,
    overdue: Annotated[bool | None, Query(description="past the deadline (or done late)")] = None,
    open_: Annotated[
        bool | None,
        Query(
            alias="open",
            description="true: 在办 or 暂停计时 (not completed, not withdrawn); "
            "with overdue=true and no acceptance dates: every open "
            "overdue case, however long ago it was accepted",
        ),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CasePage:
    context = _context(request, db)
    query = _with_ladder().where(case_filter(who))
    for column, value in (
        (cases.c.hall_id, hall),
        (cases.c.department, department),
        (cases.c.window, window),
        (cases.c.staff, staff),
        (cases.c.status, case_status.value if case_status else None),
        (case_ladder.c.stage, stage.value if stage else None),
    ):
        if value is not None:
            query = query.where(column == value)
    if stage is not None or overdue is not None:
        query = query.where(case_ladder.c.revision == cases.c.revision)
    if overdue is not None:
        query = query.where(case_ladder.c.overdue.is_(overdue))
    if open_ is not None:
        still_open = and_(
            cases.c.status.in_((CaseStatus.RUNNING.value, CaseStatus.SUSPENDED.value)),
            cases.c.completed_at.is_(None),
        )
        query = query.where(still_open if open_ else not_(still_open))
    if accepted_from is not None:
        query = query.where(cases.c.accepted_at >= day_start(accepted_from))
    if accepted_to is not None:
        query = query.where(cases.c.accepted_at < day_start(accepted_to + dt.timedelta(days=1)))
    if cursor is not None:
        c_at, c_no = _uncursor(cursor)
        query = query.where(
            or_(
                cases.c.accepted_at < c_at,
                and_(cases.c.accepted_at == c_at, cases.c.case_no < c_no),
            )
        )
    query = query.order_by(cases.c.accepted_at.desc(), cases.c.case_no.desc()).limit(limit + 1)
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
        stale = [r.case_no for r in rows[:limit] if r.l_revision != r.revision]
        held = await _suspensions(conn, stale)
        names = await names_for(conn, (r.hall_id for r in rows))
    items = [
        CaseOut.model_validate(
            _case_out(who, r, _ladder(r, context, held.get(r.case_no, [])), names)
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return CasePage(items=items, next_cursor=_cursor(rows[limit - 1]) if more else None)


CaseNo = Annotated[str, Path(pattern=CASE_NO_PATTERN, description="办件编号")]


@router.get(
    "/cases/{case_no}",
    response_model=CaseDetailOut,
    summary="One case: ladder stage, deadline, days over and every recorded step",
    responses={404: {"description": "no such case, or not in the caller's scope"}},
)
async def get_case(request: Request, db: Engine, who: CaseReader, case_no: CaseNo) -> CaseDetailOut:
    context = _context(request, db)
    async with db.connect() as conn:
        row = (
            await conn.execute(_with_ladder().where(cases.c.case_no == case_no, case_filter(who)))
        ).first()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
        held = (await _suspensions(conn, [case_no]))[case_no]
        recorded = (
            await conn.execute(
                select(case_steps)
                .where(case_steps.c.case_no == case_no)
                .order_by(case_steps.c.at, case_steps.c.recorded_at)
            )
        ).all()
        names = await names_for(conn, [row.hall_id])
    ladder = _ladder(row, context, held)
    current = _current_steps(row, held, context, ladder)
    return CaseDetailOut.model_validate(
        {
            **_case_out(who, row, ladder, names),
            "suspensions": [
                {"start": s.started_at, "end": s.ended_at, "reason": s.reason} for s in held
            ],
            "steps": [
                {
                    "stage": s.stage,
                    "label": LadderStage(s.stage).label,
                    "on_date": s.on_date,
                    "at": s.at,
                    "days_over": s.days_over,
                    "revision": s.revision,
                    "recorded_at": s.recorded_at,
                    "superseded": current is not None and (s.stage, s.at) not in current,
                }
                for s in recorded
            ],
        }
    )


def _current_steps(
    row: Any, held: list[Any], context: CaseContext, ladder: LadderOut | None
) -> set[tuple[str, dt.datetime]] | None:
    """The steps today's data leads to up to the ladder's day (None: cannot tell)."""
    if ladder is None or row.status == CaseStatus.WITHDRAWN.value:
        return None
    try:
        found = steps(clock_of(row, held), ladder.as_of, context.calendar, context.ladder)
    except ValueError:
        return None
    return {(s.stage.value, s.at) for s in found}


@router.get(
    "/cases/{case_no}/revisions",
    response_model=list[RevisionOut],
    summary="Every reported version of a case, oldest first",
    responses={404: {"description": "no such case, or not in the caller's scope"}},
)
async def case_revisions_of(db: Engine, who: CaseReader, case_no: CaseNo) -> list[RevisionOut]:
    async with db.connect() as conn:
        seen = (
            await conn.execute(
                select(cases.c.case_no).where(cases.c.case_no == case_no, case_filter(who))
            )
        ).first()
        if seen is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
        rows = (
            await conn.execute(
                select(case_revisions)
                .where(case_revisions.c.case_no == case_no)
                .order_by(case_revisions.c.revision)
            )
        ).all()
    out = []
    for r in rows:
        doc = {k: v for k, v in r.doc.items() if k != "applicant_digest"}
        out.append(RevisionOut(revision=r.revision, received_at=r.received_at, doc=doc))
    return out
