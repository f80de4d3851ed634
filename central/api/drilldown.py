"""GET /api/v1/drilldown: indicators one level below where the caller stands (halls → a hall's
departments → a department's windows → a window's staff), ranked, with the period's totals and
a daily trend, within the caller's scope. The halls and a hall's departments are read from
the daily rollups (``central.reporting.rollup_query``: the same numbers as the facts give);
below a department, and for a department leader (the evaluations correlated to the
department's cases, not the roster's windows), ``central.rules.indicators.compute`` runs over
the stored facts of the range."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.bulletin import GroupOut, group_out
from central.api.deps import Engine, EvaluationReader
from central.api.overview import FIRST_DAY, LAST_DAY, calendar_for
from central.gaming.confirmed import confirmed, per_staff
from central.reporting import bulletin_figures, rollup_query, scorecard
from central.reporting.bulletin import ranked
from central.reporting.names import STAFF_NAME_DOC
from central.reporting.registry import HALL_NAME_DOC, Halls, display_name
from central.reporting.registry_cache import hall_names
from central.rules.indicators import DateRange, Grouping, GroupKey, Indicators
from central.rules.workdays import CalendarError, WorkCalendar, business_date
from central.security.tokens import Role
from hallkit.clock import utc_now

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

MAX_DAYS = 92


class DayOut(BaseModel):
    day: dt.date
    indicators: dict[str, Any] | None = Field(description="null: nothing happened that day")


class DrilldownOut(BaseModel):
    first: dt.date
    last: dt.date
    level: Literal["hall", "department", "window", "staff", "case"] = Field(
        description="what the groups are; 'case': the path ends at one staff member, whose "
        "cases GET /api/v1/cases lists"
    )
    hall_name: str | None = Field(
        default=None, description="the hall the path stands in: " + HALL_NAME_DOC
    )
    staff_name: str | None = Field(
        default=None, description="the staff member it stands at: " + STAFF_NAME_DOC
    )
    correlated: bool
    total: dict[str, Any] | None
    groups: list[GroupOut] = Field(description="with ranks among themselves")
    trend: list[DayOut]


def _level(
    hall: str | None, department: str | None, window: str | None, staff: str | None
) -> tuple[str, Grouping | None]:
    if hall is None:
        return "hall", Grouping.HALL
    if staff is not None:
        return "case", None
    if window is not None:
        return "staff", Grouping.STAFF
    if department is not None:
        return "window", Grouping.WINDOW
    return "department", Grouping.DEPARTMENT


# the levels the rollups hold as they are: the halls, a hall's departments
_FROM_ROLLUPS = (Grouping.HALL, Grouping.DEPARTMENT)


async def _from_rollups(
    db: AsyncEngine, period: DateRange, grouping: Grouping, calendar: WorkCalendar, reach: Halls
) -> tuple[
    dict[GroupKey, Indicators], dict[GroupKey, Indicators], list[tuple[dt.date, Indicators | None]]
]:
    """The period's total, its groups and the daily trend from the rollups (``reach``: every
    hall, a hall manager's halls, or the one hall the path stands in)."""
    async with db.connect() as conn:
        by_group = await rollup_query.indicators(conn, period, grouping, calendar, hall=reach)
        if grouping is Grouping.HALL:  # the halls' figures summed (each is a sum over halls)
            total = {GroupKey(): bulletin_figures.total(by_group.values())} if by_group else {}
        else:
            total = await rollup_query.indicators(conn, period, Grouping.ALL, calendar, hall=reach)
        trend = await rollup_query.daily(conn, period, calendar, hall=reach)
    return total, by_group, trend


@router.get(
    "/drilldown",
    response_model=DrilldownOut,
    summary="Indicators by hall → department → window → staff, ranked, with a trend",
    responses={
        403: {"description": "technicians, or a hall outside the scope"},
        422: {
            "description": f"more than {MAX_DAYS} days, first after last, or a "
            "year the working-day calendar does not know"
        },
    },
)
async def drilldown(
    db: Engine,
    who: EvaluationReader,
    first: Annotated[
        dt.date | None,
        Query(ge=FIRST_DAY, le=LAST_DAY, description="business date, default: 29 days before last"),
    ] = None,
    last: Annotated[
        dt.date | None, Query(ge=FIRST_DAY, le=LAST_DAY, description="business date, default today")
    ] = None,
    hall: str | None = None,
    department: str | None = None,
    window: Annotated[str | None, Query(pattern=r"^[0-9]{1,6}$")] = None,
    staff: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
) -> DrilldownOut:
    if who.role is Role.HALL_MANAGER and hall is not None and hall not in who.halls:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看该大厅 / not your hall")
    if who.role is Role.DEPARTMENT_LEADER and department not in (None, who.department):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "无权查看其他部门 / not your department")
    last = last or business_date(utc_now())
    first = first or last - dt.timedelta(days=29)
    if last < first or (last - first).days >= MAX_DAYS:
        raise HTTPException(
            422, f"日期范围须在 {MAX_DAYS} 天内 / at most {MAX_DAYS} days, first ≤ last"
        )
    if hall is None:
        department = window = staff = None  # the path starts at a hall
    level, grouping = _level(hall, department, window, staff)
    period = DateRange(first, last)
    calendar = calendar_for(db)
    try:
        if who.role is not Role.DEPARTMENT_LEADER and grouping in _FROM_ROLLUPS:
            reach = who.halls if who.role is Role.HALL_MANAGER and hall is None else hall
            total, by_group, trend = await _from_rollups(db, period, grouping, calendar, reach)
            names: dict[tuple[str, str], str] = {}  # halls and departments name no one
        else:
            facts = await scorecard.load(
                db, who, period, calendar, hall=hall, department=department
            )
            facts = scorecard.narrowed(facts, window=window, staff=staff)
            total = scorecard.compute(facts, period, Grouping.ALL, calendar)
            by_group = scorecard.compute(facts, period, grouping, calendar) if grouping else {}
            trend = scorecard.daily(facts, period, calendar)
            names = scorecard.staff_names(facts)
    except CalendarError as exc:
        raise HTTPException(422, str(exc)) from None
    groups = ranked(by_group)
    everything = next(iter(total.values()), None)
    async with db.connect() as conn:
        registered = await hall_names(conn)
        gaming = per_staff(await confirmed(conn, who, first, last, hall=hall))
    out = [group_out(g, names, registered) for g in groups]
    for g in out:
        if g.staff is not None and g.hall is not None:
            g.confirmed_anomalies = gaming.get((g.hall, g.staff), 0)
    return DrilldownOut(
        first=first,
        last=last,
        level=level,
        hall_name=None if hall is None else display_name(registered, hall),
        staff_name=None if hall is None or staff is None else names.get((hall, staff)),
        correlated=await scorecard.correlated(db, period),
        total=scorecard.indicators_doc(everything) if everything else None,
        groups=out,
        trend=[
            DayOut(day=d, indicators=scorecard.indicators_doc(i) if i else None) for d, i in trend
        ],
    )
