"""效能指标: every indicator of central/rules/INDICATORS.md as numerator and denominator, per
hall, department, window or staff member, for any date range; and each hall's opening hours
and window roster that the indicators use."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.api.correlation_scope import calendar_for, period, scope_of
from central.api.deps import Engine, EvaluationReader, HallId, SetupReader, SetupWriter
from central.reporting import facts, halls, registry_cache, rollup_query, scorecard
from central.reporting.halls import SetupText
from central.reporting.registry import HALL_NAME_DOC, display_name
from central.rules.indicators import DateRange, Grouping, Indicators, Ratio
from central.rules.workdays import CalendarError
from central.security.access import Area
from central.store.schema import cases

router = APIRouter(prefix="/api/v1", tags=["indicators"])

RATIOS = {
    "on_time_rate": "按时办结率",
    "avg_handling_days": "平均办理时长（工作日）",
    "early_completion_rate": "提前办结率",
    "handling_speedup": "办理提速率",
    "promise_speedup": "承诺提速率",
    "same_day_rate": "现场办结率",
    "evaluation_rate": "评价率",
    "satisfaction_rate": "群众满意率",
    "bad_review_rate": "差评率",
    "avg_wait_minutes": "平均等候时长（分钟）",
    "no_show_rate": "过号率",
    "staffed_rate": "在岗率",
    "staffed_coverage": "在岗率覆盖",
}
EXPLAIN = {
    "staffed_rate": "在岗分钟 / 开放且网关在报的分钟（网关离线、未报的时段不计入分母） / staffed "
    "minutes over opening minutes during which the hall's gateway reported",
    "staffed_coverage": "网关在报的开放分钟 / 全部开放分钟：在岗率覆盖的时段 / opening minutes "
    "the gateway reported over all opening minutes (what 在岗率 covers)",
}


class RatioOut(BaseModel):
    name: str = Field(description="Chinese name")
    numerator: float
    denominator: float
    value: float | None = Field(description="numerator / denominator; null when there is no data")
    explain: str | None = Field(default=None, description="what numerator and denominator count")


class GroupOut(BaseModel):
    hall: str | None
    hall_name: str | None = Field(default=None, description=HALL_NAME_DOC)
    department: str | None
    window: str | None
    staff: str | None
    staff_name: str | None = Field(default=None, description="工作人员姓名 (hall setup)")


class IndicatorGroupOut(BaseModel):
    group: GroupOut
    ratios: dict[str, RatioOut]
    overdue_completed: int = Field(description="completed after the deadline, in the range")
    overdue_open: int = Field(description="open and ≥ 1 working day past the deadline")
    overdue_count: int = Field(description="超时件数")
    bad_reviews: dict[str, int] = Field(description="差评 by reason (key 3–6 → count)")
    appeal_excluded: int = Field(
        default=0, description="申诉核减: evaluations an upheld appeal took out of 满意率 and 差评"
    )


class IndicatorsOut(BaseModel):
    first: dt.date
    last: dt.date
    group: Grouping
    groups: list[IndicatorGroupOut]


def _ratio(field: str, r: Ratio) -> RatioOut:
    return RatioOut(
        name=RATIOS[field],
        numerator=r.numerator,
        denominator=r.denominator,
        value=r.value,
        explain=EXPLAIN.get(field),
    )


def _group_out(
    result: Indicators, names: dict[tuple[str, str], str], hall_names: Mapping[str, str]
) -> IndicatorGroupOut:
    g = result.group
    return IndicatorGroupOut(
        group=GroupOut(
            hall=g.hall,
            hall_name=None if g.hall is None else display_name(hall_names, g.hall),
            department=g.department,
            window=g.window,
            staff=g.staff,
            staff_name=halls.name_of(names, g.hall, g.staff),
        ),
        ratios={field: _ratio(field, getattr(result, field)) for field in RATIOS},
        overdue_completed=result.overdue_completed,
        overdue_open=result.overdue_open,
        overdue_count=result.overdue_count,
        bad_reviews={str(int(k)): v for k, v in result.bad_reviews.items()},
        appeal_excluded=result.appeal_excluded,
    )


@router.get(
    "/indicators",
    response_model=IndicatorsOut,
    summary="效能指标 per hall / department / window / staff for a date range",
)
async def get_indicators(
    request: Request,
    db: Engine,
    who: EvaluationReader,
    from_: Annotated[dt.date, Query(alias="from", description="first business day")],
    to: Annotated[dt.date, Query(description="last business day (inclusive)")],
    group: Grouping = Grouping.HALL,
    hall: str | None = None,
    department: str | None = None,
) -> IndicatorsOut:
    """Facts: cases, service sessions, current correlation results (counted evaluations
    only), presence periods. A department leader gets their own department's figures."""
    scope = scope_of(who, hall)
    if scope.department is not None:
        if department not in (None, scope.department):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "只能查看本部门 / only your own department"
            )
        department = scope.department
    first, last = period(from_, to)
    calendar = calendar_for(request, db)
    span = DateRange(first, last)
    try:
        async with db.connect() as conn:
            if department is None:  # the daily rollups: sums of a few rows per hall-day
                results = await rollup_query.indicators(
                    conn, span, group, calendar, hall=scope.reach
                )
                names = await _staff_names(conn, {k.hall for k in results if k.staff})
            else:  # a department's cases and what is correlated to them: from the facts
                loaded = await facts.load(
                    conn, span, calendar, hall=scope.reach, department=department
                )
                results = facts.indicators(loaded, span, group, calendar)
                names = scorecard.staff_names(loaded)
            registered = await registry_cache.hall_names(conn)
    except CalendarError as exc:
        raise HTTPException(422, str(exc)) from None
    groups = [_group_out(v, names, registered) for v in results.values()]
    if department is not None and group is Grouping.DEPARTMENT:
        groups = [g for g in groups if g.group.department == department]
    return IndicatorsOut(first=first, last=last, group=group, groups=groups)


async def _staff_names(
    conn: AsyncConnection, hall_ids: set[str | None]
) -> dict[tuple[str, str], str]:
    """(hall, staff number) → name, from the stored setups of the halls named."""
    stored = await halls.stored_setups(conn, sorted(h for h in hall_ids if h is not None))
    return {(h, n): name for h, setup in stored.items() for n, name in setup.staff.items()}


@router.get(
    "/halls/{hall}/setup",
    response_model=SetupText,
    summary="A hall's opening hours and window → department roster",
)
async def get_setup(hall: HallId, db: Engine, who: SetupReader) -> SetupText:
    """The stored setup; a hall nobody configured gets 09:00–12:00, 13:00–17:00 and a roster
    inferred from its cases."""
    scope = scope_of(who, hall, Area.HALL_SETUP)
    if scope.hall not in (None, hall):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看该大厅 / not your hall")
    async with db.connect() as conn:
        stored = (await halls.stored_setups(conn, [hall])).get(hall)
        counts = (
            await conn.execute(
                select(cases.c.window, cases.c.department, func.count())
                .where(cases.c.hall_id == hall, cases.c.window.is_not(None))
                .group_by(cases.c.window, cases.c.department)
            )
        ).all()
    return SetupText.of(
        halls.with_defaults(hall, stored, [(w, d) for w, d, n in counts for _ in range(n)])
    )


@router.put(
    "/halls/{hall}/setup",
    response_model=SetupText,
    summary="Set a hall's opening hours and roster (supervisors)",
)
async def put_setup(hall: HallId, body: SetupText, db: Engine, who: SetupWriter) -> SetupText:
    if body.hall != hall:
        raise HTTPException(422, f"hall {body.hall!r} in the body, {hall!r} in the path")
    try:
        setup = body.to_setup()
    except ValidationError as exc:
        raise HTTPException(422, [e["msg"] for e in exc.errors()]) from None
    async with db.begin() as conn:
        await halls.save_setup(conn, setup, dt.datetime.now(dt.UTC))
    return SetupText.of(setup)
