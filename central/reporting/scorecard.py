"""Indicators (效能指标) within a caller's scope, for the dashboard's overview, drill-down and
monthly bulletin: the facts correlation loads from the store (``central.reporting.facts``),
narrowed to a window or a staff member for drilling down, and split by day for trends.

Scope follows the API's: supervisors and technicians every hall; a hall manager the hall; a
department leader the department's cases and what is correlated to them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting import facts as correlation_facts
from central.reporting.facts import Facts
from central.reporting.registry import Halls
from central.rules.indicators import DateRange, Grouping, GroupKey, Indicators
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.security.access import Area, case_filter, hall_filter
from central.security.tokens import Principal, Role
from central.store.schema_correlation import correlation_days


def case_scope(who: Principal) -> Any:
    """The cases whose figures a caller may see (central.security.access decides)."""
    return case_filter(who, Area.EVALUATIONS)


def hall_scope(who: Principal, column: Any) -> Any:
    """For hall-keyed tables; department leaders are narrowed by case links elsewhere."""
    return hall_filter(who, column, Area.EVALUATIONS)


async def load(
    engine: AsyncEngine,
    who: Principal,
    period: DateRange,
    calendar: WorkCalendar,
    *,
    hall: str | None = None,
    department: str | None = None,
) -> Facts:
    """Every fact the caller may see for ``period``, optionally of one hall / department."""
    halls: Halls = hall
    if who.role is Role.HALL_MANAGER:  # their hall and the halls below it
        halls = who.halls if hall is None else hall if hall in who.halls else "\0none"
    if who.role is Role.DEPARTMENT_LEADER:
        department = who.department if department in (None, who.department) else "\0none"
    async with engine.connect() as conn:
        return await correlation_facts.load(
            conn, period, calendar, hall=halls, department=department
        )


async def correlated(engine: AsyncEngine, period: DateRange) -> bool:
    """Has correlation run for any hall-day of the period? (If not, evaluation figures are
    "no data yet" rather than zero.)"""
    query = select(
        exists().where(
            correlation_days.c.business_day >= period.first,
            correlation_days.c.business_day <= period.last,
        )
    )
    async with engine.connect() as conn:
        return bool((await conn.execute(query)).scalar())


def compute(
    facts: Facts, period: DateRange, by: Grouping, calendar: WorkCalendar
) -> dict[GroupKey, Indicators]:
    return correlation_facts.indicators(facts, period, by, calendar)


def narrowed(facts: Facts, *, window: str | None = None, staff: str | None = None) -> Facts:
    """The facts of one window or one staff member (drilling down inside a hall)."""

    def keep(win: str | None, person: str | None) -> bool:
        return (window is None or win == window) and (staff is None or person == staff)

    return replace(
        facts,
        cases=[c for c in facts.cases if keep(c.window, c.staff)],
        evaluations=[e for e in facts.evaluations if keep(e.window, e.staff)],
        case_evaluations=[e for e in facts.case_evaluations if keep(e.window, e.staff)],
        sessions=[s for s in facts.sessions if keep(s.window, s.staff)],
        staffing=[s for s in facts.staffing if keep(s.window, s.staff)],
    )


def daily(
    facts: Facts, period: DateRange, calendar: WorkCalendar
) -> list[tuple[dt.date, Indicators | None]]:
    """One ``Grouping.ALL`` result per day, from that day's facts: cases accepted or completed
    on it, its evaluations and sessions (plus earlier evaluations of its cases, for 评价率),
    staffing touching it; None for a day without any. Open-case counts (overdue_open) are the
    period's business, not a trend's."""
    days = {d: Facts(halls=facts.halls, reporting=facts.reporting) for d in period.days()}
    for c in facts.cases:
        on = {business_date(c.accepted_at)}
        if c.completed_at is not None:
            on.add(business_date(c.completed_at))
        for d in on & days.keys():
            days[d].cases.append(c)
    for e in facts.evaluations:
        if (d := business_date(e.evaluated_at)) in days:
            days[d].evaluations.append(e)
    by_case: dict[str, list[Any]] = {}
    for e in facts.case_evaluations:
        by_case.setdefault(e.case_no or "", []).append(e)
    for session in facts.sessions:
        if (d := business_date(session.issued_at)) in days:
            days[d].sessions.append(session)
    for span in facts.staffing:
        for d in {business_date(span.start), business_date(span.end)} & days.keys():
            days[d].staffing.append(span)
    out: list[tuple[dt.date, Indicators | None]] = []
    for d, day in sorted(days.items()):
        end = day_start(d + dt.timedelta(days=1))
        day.case_evaluations = [
            e for c in day.cases for e in by_case.get(c.case_no, []) if e.evaluated_at < end
        ]
        result = compute(day, DateRange(d, d), Grouping.ALL, calendar)
        out.append((d, next(iter(result.values()), None)))
    return out


def ratio(value: Any) -> dict[str, Any]:
    """A Ratio as JSON: numerator, denominator, value (None: no data, not 0 %)."""
    return {"numerator": value.numerator, "denominator": value.denominator, "value": value.value}


def indicators_doc(ind: Indicators) -> dict[str, Any]:
    """Every indicator of one group, as the dashboard's API gives them."""
    return {
        "on_time_rate": ratio(ind.on_time_rate),
        "avg_handling_days": ratio(ind.avg_handling_days),
        "overdue_completed": ind.overdue_completed,
        "overdue_open": ind.overdue_open,
        "overdue_count": ind.overdue_count,
        "promise_speedup": ratio(ind.promise_speedup),
        "handling_speedup": ratio(ind.handling_speedup),
        "early_completion_rate": ratio(ind.early_completion_rate),
        "same_day_rate": ratio(ind.same_day_rate),
        "satisfaction_rate": ratio(ind.satisfaction_rate),
        "evaluation_rate": ratio(ind.evaluation_rate),
        "bad_reviews": {str(int(k)): n for k, n in ind.bad_reviews.items()},
        "bad_review_rate": ratio(ind.bad_review_rate),
        "avg_wait_minutes": ratio(ind.avg_wait_minutes),
        "no_show_rate": ratio(ind.no_show_rate),
        "staffed_rate": ratio(ind.staffed_rate),
        "staffed_coverage": ratio(ind.staffed_coverage),
    }


def staff_names(facts: Facts) -> dict[tuple[str, str], str]:
    """(hall, staff number) → name, from the halls' setups (where they name their staff)."""
    return {
        (hall, number): name
        for hall, setup in facts.halls.items()
        for number, name in setup.staff.items()
    }


def group_doc(key: GroupKey) -> dict[str, str | None]:
    return {
        "hall": key.hall,
        "department": key.department,
        "window": key.window,
        "staff": key.staff,
    }


def sorted_groups(result: dict[GroupKey, Indicators]) -> Sequence[Indicators]:
    return [result[k] for k in sorted(result, key=GroupKey.sort_key)]
