"""The 月度通报's figures (overall, by hall, by department): from the daily rollups for callers
who see whole halls, from the facts for a department leader."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from central.reporting import rollup_query, scorecard
from central.rules.indicators import DateRange, Grouping, GroupKey, Indicators, Ratio
from central.rules.workdays import WorkCalendar
from central.security.tokens import Principal, Role

GROUPINGS = (Grouping.ALL, Grouping.HALL, Grouping.DEPARTMENT)
Figures = dict[Grouping, dict[GroupKey, Indicators]]


async def from_rollups(
    engine: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar
) -> Figures:
    """The month's figures from the daily rollups (the same numbers as over the facts), for
    callers who see whole halls. The overall figures are the halls' summed: every figure is a
    sum over halls (each case, window and evaluation belongs to one hall), so a third read of
    the month's rollups would only add them up again. The open cases and the windows are read
    once for both groupings."""
    reach = who.halls if who.role is Role.HALL_MANAGER else None
    async with engine.connect() as conn:
        figures = await rollup_query.indicators_by(
            conn, period, (Grouping.HALL, Grouping.DEPARTMENT), calendar, hall=reach
        )
    halls = figures[Grouping.HALL].values()
    figures[Grouping.ALL] = {GroupKey(): total(halls)} if halls else {}
    return figures


def total(groups: Iterable[Indicators]) -> Indicators:
    """Disjoint groups' indicators as one group's: numerators, denominators and counts summed."""
    items = list(groups)
    summed: dict[str, Any] = {}
    for f in fields(Indicators):
        values = [getattr(i, f.name) for i in items]
        if f.name == "group":
            summed[f.name] = GroupKey()
        elif isinstance(values[0], Ratio):
            summed[f.name] = Ratio(
                sum(r.numerator for r in values), sum(r.denominator for r in values)
            )
        elif isinstance(values[0], int):
            summed[f.name] = sum(values)
        else:  # bad reviews by reason
            bad: Counter[Any] = Counter()
            for counts in values:
                bad.update(counts)
            summed[f.name] = dict(bad)
    return Indicators(**summed)


async def from_facts(
    engine: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar
) -> tuple[Figures, dict[tuple[str, str], str]]:
    """A department leader's: the evaluations correlated to the department's cases, which the
    rollups (by the roster's window departments) do not hold."""
    facts = await scorecard.load(engine, who, period, calendar)
    figures = {by: scorecard.compute(facts, period, by, calendar) for by in GROUPINGS}
    return figures, scorecard.staff_names(facts)
