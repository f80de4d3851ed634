"""月度通报 API: the monthly bulletin as JSON and as CSV (UTF-8 with BOM, for Excel)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from central.api.complaints import ComplaintStatOut, stat_out
from central.api.deps import Engine, EvaluationReader
from central.api.overview import calendar_for
from central.reporting import bulletin as bulletins
from central.reporting.registry import HALL_NAME_DOC, display_name
from central.reporting.scorecard import group_doc, indicators_doc
from central.security.tokens import Principal
from hallkit.clock import utc_now

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

Month = Annotated[
    str,
    Query(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$", description="YYYY-MM (Beijing calendar month)"),
]


class GroupOut(BaseModel):
    hall: str | None
    hall_name: str | None = Field(default=None, description=HALL_NAME_DOC)
    department: str | None
    window: str | None = None
    staff: str | None = None
    staff_name: str | None = Field(default=None, description="工作人员姓名 (hall setup)")
    confirmed_anomalies: int | None = Field(
        default=None, description="staff rows: confirmed gaming cases (异常线索属实) in the period"
    )
    satisfaction_rank: int | None = Field(description="1 = best; null: no evaluations")
    on_time_rank: int | None = Field(description="1 = best; null: nothing completed")
    indicators: dict[str, Any] = Field(
        description="every indicator of central/rules/INDICATORS.md; rates as "
        "{numerator, denominator, value}, value null when there is no data"
    )


class BadReviewOut(BaseModel):
    gateway: str
    seq: int
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int
    staff: str | None
    staff_name: str | None = None
    key: int
    reason: str
    evaluated_at: dt.datetime
    case_nos: list[str]
    followup_state: str | None
    followup_due: dt.date | None
    escalation_level: int | None


class OverdueCaseOut(BaseModel):
    case_no: str
    item_name: str
    department: str
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int | None
    staff: str | None
    staff_name: str | None = None
    accepted_at: dt.datetime
    deadline: dt.date | None
    days_over: int | None
    completed_at: dt.datetime | None
    stage: str | None
    stage_label: str | None


class GamingOut(BaseModel):
    id: int = Field(description="the anomaly case (GET /api/v1/anomalies/{id})")
    pattern: str
    hall: str
    hall_name: str = Field(description=HALL_NAME_DOC)
    window: int | None
    staff: str | None
    staff_name: str | None = None
    period_start: dt.date
    period_end: dt.date
    summary: str
    p_value: float | None
    effect: float
    effect_name: str
    confirmed_at: dt.datetime
    note: str


class DepartmentAuditOut(BaseModel):
    department: str
    population: int | None = Field(description="cases finished in the month (null: partial view)")
    sampled: int = Field(description="cases drawn for call-back")
    called: int = Field(description="tasks with a call-back entered")
    reached: int = Field(description="completed call-backs: the latest one reached the citizen")
    discrepancies: int = Field(description="call-backs where the citizen contradicts the record")
    case_nos: list[str] = Field(description="the cases with a finding")


class AuditSectionOut(BaseModel):
    drawn: bool = Field(
        description="false: the month has not been drawn (hallwatch-central audits draw)"
    )
    seed: str | None
    departments: list[DepartmentAuditOut]


class BulletinOut(BaseModel):
    month: str
    first: dt.date
    last: dt.date = Field(description="the month's last day, or today while it runs")
    generated_at: dt.datetime
    correlated: bool = Field(description="false: evaluation and queue figures not available yet")
    overall: dict[str, Any] | None
    halls: list[GroupOut]
    departments: list[GroupOut]
    bad_reviews: list[BadReviewOut]
    bad_reviews_cut: bool = Field(description=f"more than {bulletins.MAX_LIST}: list cut")
    overdue_cases: list[OverdueCaseOut]
    overdue_cases_cut: bool
    gaming: list[GamingOut] = Field(
        description="confirmed gaming (异常线索 a supervisor confirmed) per hall, window, staff"
    )
    audits: AuditSectionOut | None = Field(
        default=None, description="抽查: the month's sample, call-backs and findings"
    )
    complaints: list[ComplaintStatOut] = Field(
        default_factory=list,
        description="投诉数 and 投诉按时办结率 per department the complaints were routed to "
        '(group "": not routed yet)',
    )


async def _build(db: Engine, who: Principal, month: str) -> bulletins.Bulletin:
    try:
        return await bulletins.build(db, who, month, calendar_for(db), utc_now())
    except ValueError as exc:  # a month not begun, or a year the calendar does not know
        raise HTTPException(422, str(exc)) from None


def group_out(
    item: bulletins.Ranked,
    names: dict[tuple[str, str], str] | None = None,
    hall_names: Mapping[str, str] | None = None,
) -> GroupOut:
    key = group_doc(item.indicators.group)
    named = names or {}
    return GroupOut(
        hall=key["hall"],
        hall_name=None if key["hall"] is None else display_name(hall_names or {}, key["hall"]),
        department=key["department"],
        window=key["window"],
        staff=key["staff"],
        staff_name=named.get((key["hall"] or "", key["staff"] or "")),
        satisfaction_rank=item.satisfaction_rank,
        on_time_rank=item.on_time_rank,
        indicators=indicators_doc(item.indicators),
    )


@router.get(
    "/bulletin",
    response_model=BulletinOut,
    summary="Monthly bulletin (月度通报): indicators and rankings per hall and "
    "department, bad reviews, overdue cases",
    responses={
        403: {"description": "technicians"},
        422: {
            "description": "a month that has not begun, or a year the "
            "working-day calendar does not know"
        },
    },
)
async def get_bulletin(db: Engine, who: EvaluationReader, month: Month) -> BulletinOut:
    b = await _build(db, who, month)
    return BulletinOut(
        month=b.month,
        first=b.period.first,
        last=b.period.last,
        generated_at=b.generated_at,
        correlated=b.correlated,
        overall=indicators_doc(b.overall) if b.overall is not None else None,
        halls=[group_out(i, hall_names=b.hall_names) for i in b.halls],
        departments=[group_out(i, hall_names=b.hall_names) for i in b.departments],
        bad_reviews=[BadReviewOut.model_validate(x) for x in b.bad_reviews],
        bad_reviews_cut=b.bad_reviews_cut,
        overdue_cases=[OverdueCaseOut.model_validate(x) for x in b.overdue_cases],
        overdue_cases_cut=b.overdue_cases_cut,
        gaming=[GamingOut.model_validate(x) for x in b.gaming],
        audits=None
        if b.audits is None
        else AuditSectionOut.model_validate(dataclasses.asdict(b.audits)),
        complaints=[stat_out(c) for c in b.complaints],
    )


@router.get(
    "/bulletin.csv",
    summary="Monthly bulletin as CSV (UTF-8 with BOM, for Excel)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "one part of the bulletin",
        },
        403: {"description": "technicians"},
    },
)
async def get_bulletin_csv(
    db: Engine,
    who: EvaluationReader,
    month: Month,
    part: Annotated[
        Literal["indicators", "bad_reviews", "overdue", "gaming", "audits", "complaints"],
        Query(description="which table"),
    ] = "indicators",
    lang: Annotated[Literal["zh", "en"], Query(description="header language")] = "zh",
) -> Response:
    b = await _build(db, who, month)
    name = f"hallwatch-bulletin-{month}-{part}.csv"
    return Response(
        bulletins.to_csv(b, part, lang),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
