"""抽查 API: draw a month's sample of finished cases, the auditor's tasks with each case's
record, evaluations and evidence, call-back results, and the findings.

Supervisors (监察室) draw and enter call-backs; a department leader reads its own department's
tasks and findings and cannot change them; nobody else reaches audits. A task outside the
caller's reach answers exactly like a task that does not exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from central.api.cases import CaseDetailOut, get_case
from central.api.deps import Engine, gate
from central.api.reviews import EvidenceOut, evidence_out
from central.audits import config as audit_config
from central.audits import store
from central.audits.callback import Answer, CallbackIn
from central.audits.report import Finding, findings
from central.audits.sample import MONTH_PATTERN, SEED_PATTERN
from central.cases.model import NO_NUL
from central.reporting import reviews
from central.rules.scale import DeviceKey
from central.rules.workdays import business_date
from central.security.access import Area, may
from central.security.tokens import Principal
from hallkit.clock import utc_now

router = APIRouter(prefix="/api/v1/audits", tags=["audits"])

AuditReader = Annotated[Principal, gate(Area.AUDITS)]
AuditWorker = Annotated[Principal, gate(Area.AUDIT_WORK)]
NOT_FOUND = "抽查任务不存在 / no such audit task"
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1, description="audit task id")]


def last_month(today: dt.date) -> str:
    first = today.replace(day=1) - dt.timedelta(days=1)
    return f"{first:%Y-%m}"


def month_query(month: str | None) -> str:
    return month or last_month(business_date(utc_now()))


Month = Annotated[
    str | None,
    Query(pattern=MONTH_PATTERN, description="YYYY-MM (Beijing); default: last month"),
]


class DrawIn(BaseModel):
    month: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM, a month that has ended")
    seed: str | None = Field(
        default=None, pattern=SEED_PATTERN, description="default: a new random seed"
    )


class DepartmentSampleOut(BaseModel):
    department: str
    population: int = Field(description="cases the department finished in the month")
    size: int = Field(description="cases drawn")
    count: int | None = Field(description="the size rule used: a count …")
    percent: float | None = Field(description="… and/or a percentage (the larger wins)")


class SampleOut(BaseModel):
    month: str
    seed: str = Field(description="draw it again with this seed: the same cases come out")
    drawn_at: dt.datetime
    drawn_by: str
    created: bool = Field(description="false: the month had been drawn before; this is it")
    departments: list[DepartmentSampleOut]


class TaskOut(BaseModel):
    id: int
    month: str
    case_no: str
    department: str
    hall: str
    item_name: str
    window: int | None
    staff: str | None
    accepted_at: dt.datetime
    completed_at: dt.datetime | None
    position: int = Field(description="draw order within the department, from 0")
    called: bool = Field(description="a call-back has been entered")
    reached: bool | None = Field(description="the latest call-back reached the citizen")
    discrepancies: list[str] = Field(description="the latest call-back's findings")


class TaskListOut(BaseModel):
    month: str
    sample: SampleOut | None = Field(description="null: the month has not been drawn")
    tasks: list[TaskOut]
    may_work: bool = Field(description="the caller may enter call-backs")


class EvaluationOut(BaseModel):
    gateway: str
    seq: int
    hall: str
    window: int
    key: int
    label: str
    evaluated_at: dt.datetime
    staff: str | None
    counted: bool
    flags: list[str]
    evidence: list[EvidenceOut]


class CallbackOut(BaseModel):
    id: int
    reached: bool
    handled: Answer | None
    timing: Answer | None
    evaluation: Answer | None
    satisfied: Answer | None
    note: str
    discrepancies: list[str]
    entered_by: str
    entered_at: dt.datetime


class TaskDetailOut(BaseModel):
    task: TaskOut
    case: CaseDetailOut = Field(description="the case's record (applicant masked)")
    evaluations: list[EvaluationOut]
    callbacks: list[CallbackOut] = Field(description="oldest first; the latest counts")
    may_work: bool


class FindingOut(BaseModel):
    task_id: int
    case_no: str
    department: str
    hall: str
    discrepancies: list[str]
    note: str
    entered_at: dt.datetime


def _sample_out(sample: store.Sample) -> SampleOut:
    return SampleOut(
        month=sample.month,
        seed=sample.seed,
        drawn_at=sample.drawn_at,
        drawn_by=sample.drawn_by,
        created=sample.created,
        departments=[
            DepartmentSampleOut(department=name, **doc)
            for name, doc in sorted(sample.departments.items())
        ],
    )


def _task_out(row: Any) -> TaskOut:
    return TaskOut(
        id=row.id,
        month=row.month,
        case_no=row.case_no,
        department=row.department,
        hall=row.hall_id,
        item_name=row.item_name,
        window=row.window,
        staff=row.staff,
        accepted_at=row.accepted_at,
        completed_at=row.completed_at,
        position=row.position,
        called=row.cb_id is not None,
        reached=row.cb_reached,
        discrepancies=list(row.cb_discrepancies or []),
    )


def _refuse(exc: store.AuditError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


@router.post(
    "/draw",
    response_model=SampleOut,
    summary="Draw a month's sample of finished cases per department (once a month)",
    description="Drawing a month that already has a sample returns it unchanged.",
    responses={422: {"description": "a month that has not ended, or a bad seed"}},
)
async def draw(db: Engine, who: AuditWorker, body: DrawIn) -> SampleOut:
    try:
        sample = await store.draw_month(
            db,
            body.month,
            audit_config.bound(db),
            seed=body.seed,
            by=who.label or who.role.value,
            now=utc_now(),
        )
    except (store.AuditError, ValueError) as exc:
        status_code = exc.status if isinstance(exc, store.AuditError) else 422
        raise HTTPException(status_code, str(exc)) from None
    return _sample_out(sample)


@router.get("", response_model=TaskListOut, summary="A month's sample and its audit tasks")
async def list_tasks(
    db: Engine,
    who: AuditReader,
    month: Month = None,
    department: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
) -> TaskListOut:
    chosen = month_query(month)
    async with db.connect() as conn:
        sample = await store.sample_of(conn, chosen)
        rows = await store.tasks(conn, who, chosen, department=department)
    if sample is not None and not may(who, Area.AUDIT_WORK):  # own department's figures only
        own = {k: v for k, v in sample.departments.items() if k == who.department}
        sample = dataclasses.replace(sample, departments=own)
    return TaskListOut(
        month=chosen,
        sample=None if sample is None else _sample_out(sample),
        tasks=[_task_out(r) for r in rows],
        may_work=may(who, Area.AUDIT_WORK),
    )


async def _evaluations(conn: Any, who: Principal, case_no: str) -> list[EvaluationOut]:
    out = []
    for r in await store.case_evaluations(conn, case_no):
        seen = await reviews.visible(conn, who, r.gateway_id, r.seq)
        found = [] if seen is None else await evidence_out(conn, seen)
        out.append(
            EvaluationOut(
                gateway=r.gateway_id,
                seq=r.seq,
                hall=r.hall_id,
                window=r.window,
                key=r.key,
                label=DeviceKey(r.key).label,
                evaluated_at=r.evaluated_at,
                staff=r.staff,
                counted=r.counted,
                flags=[str(f) for f in r.flags or []],
                evidence=found,
            )
        )
    return out


def _callback_out(row: Any) -> CallbackOut:
    return CallbackOut.model_validate({**row._asdict(), "discrepancies": list(row.discrepancies)})


@router.get(
    "/tasks/{task_id}",
    response_model=TaskDetailOut,
    summary="One audit task: the case's record, its evaluations with evidence, the call-backs",
    responses={404: {"description": "no such task, or not in the caller's reach"}},
)
async def get_task(
    request: Request, db: Engine, who: AuditReader, task_id: TaskId
) -> TaskDetailOut:
    async with db.connect() as conn:
        row = await store.task(conn, who, task_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
        evaluations = await _evaluations(conn, who, row.case_no)
        calls = await store.callbacks(conn, task_id)
    case = await get_case(request, db, who, row.case_no)
    return TaskDetailOut(
        task=_task_out(row),
        case=case,
        evaluations=evaluations,
        callbacks=[_callback_out(c) for c in calls],
        may_work=may(who, Area.AUDIT_WORK),
    )


@router.post(
    "/tasks/{task_id}/callbacks",
    response_model=CallbackOut,
    status_code=status.HTTP_201_CREATED,
    summary="Enter a call-back result (回访); a contradiction of the record becomes a finding",
    responses={404: {"description": "no such task"}},
)
async def post_callback(
    db: Engine, who: AuditWorker, task_id: TaskId, body: CallbackIn
) -> CallbackOut:
    try:
        row = await store.record_callback(db, who, task_id, body, utc_now())
    except store.AuditError as exc:
        raise _refuse(exc) from None
    return _callback_out(row)


@router.get(
    "/findings",
    response_model=list[FindingOut],
    summary="A month's findings: call-backs where the citizen contradicts the record",
)
async def list_findings(db: Engine, who: AuditReader, month: Month = None) -> list[FindingOut]:
    async with db.connect() as conn:
        found: list[Finding] = await findings(conn, who, month_query(month), Area.AUDITS)
    return [FindingOut.model_validate(dataclasses.asdict(f)) for f in found]
