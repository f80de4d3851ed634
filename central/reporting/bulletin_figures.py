"""The 月度通报's figures (overall, by hall, by department): from the daily rollups for callers
who see whole halls, from the facts for a department leader."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting import rollup_query, scorecard
from central.rules.indicators import DateRange, Grouping, GroupKey, Indicators
from central.rules.workdays import WorkCalendar
from central.security.tokens import Principal, Role

GROUPINGS = (Grouping.ALL, Grouping.HALL, Grouping.DEPARTMENT)
Figures = dict[Grouping, dict[GroupKey, Indicators]]


async def from_rollups(
    engine: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar
) -> Figures:
    """The month's figures from the daily rollups (the same numbers as over the facts), for
    callers who see whole halls."""
    reach = who.halls if who.role is Role.HALL_MANAGER else None
    async with engine.connect() as conn:
        return {
            by: await rollup_query.indicators(conn, period, by, calendar, hall=reach)
            for by in GROUPINGS
        }


async def from_facts(
    engine: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar
) -> tuple[Figures, dict[tuple[str, str], str]]:
    """A department leader's: the evaluations correlated to the department's cases, which the
    rollups (by the roster's window departments) do not hold."""
    facts = await scorecard.load(engine, who, period, calendar)
    figures = {by: scorecard.compute(facts, period, by, calendar) for by in GROUPINGS}
    return figures, scorecard.staff_names(facts)
