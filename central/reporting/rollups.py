"""Daily indicator rollups (``central.store.schema_rollups``): what one hall-day adds to every
additive indicator, computed by ``central.rules.indicators.compute`` itself over that day's facts
(one definition of each indicator), written when the correlation job has written the hall-day
and by ``hallwatch-central rollups rebuild``.

评价率 is not additive by day (a case accepted on Monday and evaluated on Wednesday counts in a
range holding both days), so each case accepted on a day is kept by the nearest days around its
acceptance on which a counted evaluation covered it; ``rollup_case_evaluations`` records which
cases each hall-day's evaluations covered, so those days are found without reading results.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.reporting import facts as correlation_facts
from central.rules.indicators import (
    CaseStatus,
    DateRange,
    Grouping,
    GroupKey,
    Indicators,
    compute,
    group_key,
)
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.store.schema import cases
from central.store.schema_correlation import correlation_days
from central.store.schema_rollups import (
    BAD_KEYS,
    GROUP_COLUMNS,
    PAIRS,
    indicator_rollups,
    indicator_rollups_monthly,
    rollup_case_evaluations,
    rollup_evaluated,
    rollup_evaluated_monthly,
    rollup_window_days,
)

GROUPINGS = (Grouping.HALL, Grouping.DEPARTMENT, Grouping.WINDOW, Grouping.STAFF)
# rollup column pair → the Indicators field it holds
FIELDS = {
    "on_time": "on_time_rate",
    "handling": "avg_handling_days",
    "promise": "promise_speedup",
    "speedup": "handling_speedup",
    "early": "early_completion_rate",
    "same_day": "same_day_rate",
    "satisfied": "satisfaction_rate",
    "wait": "avg_wait_minutes",
    "no_show": "no_show_rate",
    "staffed": "staffed_rate",
    "covered": "staffed_coverage",
}
assert set(FIELDS) == set(PAIRS)
_CHUNK = 500


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def group_fields(by: Grouping, key: GroupKey, roster_department: str | None) -> dict[str, str]:
    """A group's key columns; window rows also carry the roster's department of their window
    (not part of the group) so 在岗率覆盖 can count a department's windows."""
    department = key.department if by is Grouping.DEPARTMENT else roster_department
    return {
        "grouping": by.value,
        "department": department or "",
        "window": key.window or "",
        "staff": key.staff or "",
    }


def day_rows(
    hall: str, day: dt.date, facts: correlation_facts.Facts, calendar: WorkCalendar
) -> list[dict[str, Any]]:
    """The rollup rows of one hall-day: ``compute`` over the day's facts, per grouping."""
    period = DateRange(day, day)
    setup = facts.halls.get(hall)
    rows = []
    for by in GROUPINGS:
        results = compute(
            period,
            by,
            calendar,
            cases=facts.cases,
            sessions=facts.sessions,
            evaluations=facts.evaluations,
            staffing=facts.staffing,
            halls=list(facts.halls.values()),
            reporting=facts.reporting,
        )
        for key, result in results.items():
            values = _values(result)
            if key.hall != hall or not any(values.values()):
                continue  # a group only open cases made adds nothing to a day
            roster = None if setup is None or key.window is None else setup.windows.get(key.window)
            rows.append(
                {"hall_id": hall, "business_day": day} | group_fields(by, key, roster) | values
            )
    return rows


def _values(result: Indicators) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair, name in FIELDS.items():
        ratio = getattr(result, name)
        out[f"{pair}_n"], out[f"{pair}_d"] = float(ratio.numerator), float(ratio.denominator)
    out["overdue_completed"] = result.overdue_completed
    for k in BAD_KEYS:
        out[f"bad_{k}"] = sum(v for key, v in result.bad_reviews.items() if int(key) == k)
    out["appeal_excluded"] = result.appeal_excluded
    out["evaluated"] = 0  # 评价率's numerator: ``refresh_evaluated`` folds it in
    return out


async def refresh_day(
    conn: AsyncConnection, hall: str, day: dt.date, calendar: WorkCalendar
) -> None:
    """Recompute the rollups of one hall-day, and 评价率's rows of every acceptance day whose
    cases this day's evaluations cover (or covered before)."""
    facts = await correlation_facts.load(conn, DateRange(day, day), calendar, hall=hall)
    rows = day_rows(hall, day, facts, calendar)
    r = indicator_rollups
    await conn.execute(delete(r).where(r.c.hall_id == hall, r.c.business_day == day))
    for chunk in _chunks(rows, 200):
        await conn.execute(insert(r), list(chunk))
    await _sum_month(conn, hall, day)
    await _window_days(conn, hall, day)

    ce = rollup_case_evaluations
    covered = {
        ev.case_no
        for ev in facts.case_evaluations
        if ev.counted and ev.case_no is not None and business_date(ev.evaluated_at) == day
    }
    where = and_(ce.c.hall_id == hall, ce.c.business_day == day)
    before = set((await conn.execute(select(ce.c.case_no).where(where))).scalars())
    if covered != before:
        await conn.execute(delete(ce).where(where))
        for chunk in _chunks(sorted(covered), 1000):
            await conn.execute(
                insert(ce), [{"hall_id": hall, "business_day": day, "case_no": n} for n in chunk]
            )
    accept_days = {(hall, day)}
    for chunk in _chunks(sorted(covered | before)):
        query = select(cases.c.hall_id, cases.c.accepted_at).where(cases.c.case_no.in_(chunk))
        accept_days |= {(h, business_date(at)) for h, at in await conn.execute(query)}
    for h, d in sorted(accept_days):
        await refresh_evaluated(conn, h, d)


async def refresh_evaluated(conn: AsyncConnection, hall: str, day: dt.date) -> None:
    """评价率's numerator rows for the cases of ``hall`` accepted on ``day``."""
    query = select(cases).where(
        cases.c.hall_id == hall,
        cases.c.accepted_at >= day_start(day),
        cases.c.accepted_at < day_start(day + dt.timedelta(days=1)),
    )
    accepted = [
        row
        for row in (await conn.execute(query)).all()
        if correlation_facts.case_status(row)[0] is not CaseStatus.WITHDRAWN
    ]
    days: dict[str, list[dt.date]] = {}
    ce = rollup_case_evaluations
    for chunk in _chunks([row.case_no for row in accepted]):
        for case_no, on in await conn.execute(
            select(ce.c.case_no, ce.c.business_day).where(ce.c.case_no.in_(chunk))
        ):
            days.setdefault(case_no, []).append(on)
    counts: Counter[tuple[Any, ...]] = Counter()
    for row in accepted:
        seen = days.get(row.case_no)
        if not seen:
            continue
        earlier = max((d for d in seen if d < day), default=None)
        later = min((d for d in seen if d >= day), default=None)
        window = None if row.window is None else str(row.window)
        for by in GROUPINGS:
            key = group_key(by, hall, row.department, window, row.staff)
            if key is not None:
                fields = group_fields(by, key, None)
                counts[(*fields.values(), earlier, later)] += 1
    unfolded = await _fold_same_day(conn, hall, day, counts)
    r = rollup_evaluated
    await conn.execute(delete(r).where(r.c.hall_id == hall, r.c.accepted_day == day))
    rows = [
        {
            "hall_id": hall,
            "accepted_day": day,
            "grouping": g,
            "department": dep,
            "window": w,
            "staff": s,
            "before_day": b,
            "after_day": a,
            "cases": n,
        }
        for (g, dep, w, s, b, a), n in sorted(unfolded.items(), key=str)
    ]
    for chunk in _chunks(rows, 200):
        await conn.execute(insert(r), list(chunk))
    await _sum_month(conn, hall, day)
    await _sum_evaluated_month(conn, hall, day)


async def _fold_same_day(
    conn: AsyncConnection, hall: str, day: dt.date, counts: Counter[tuple[Any, ...]]
) -> Counter[tuple[Any, ...]]:
    """Cases evaluated on their acceptance day count in every range holding it: their number
    goes into the day's rollup row of their group (``evaluated``). Returns the counts still to
    keep in ``rollup_evaluated``: evaluated on other days, or of a group without a row yet."""
    r = indicator_rollups
    today = and_(r.c.hall_id == hall, r.c.business_day == day)
    await conn.execute(update(r).where(today, r.c.evaluated != 0).values(evaluated=0))
    same_day: Counter[tuple[str, str, str, str]] = Counter()
    for (g, dep, w, s, _, after), n in counts.items():
        if after == day:
            same_day[(g, dep, w, s)] += n
    unfolded = Counter({k: n for k, n in counts.items() if k[5] != day})
    for (g, dep, w, s), n in same_day.items():
        # a window row carries its roster department, which is not part of the group
        group = [r.c.grouping == g, r.c.window == w, r.c.staff == s]
        if g != Grouping.WINDOW.value:
            group.append(r.c.department == dep)
        done = await conn.execute(update(r).where(today, *group).values(evaluated=n))
        if not done.rowcount:
            for k, m in counts.items():
                if k[:4] == (g, dep, w, s) and k[5] == day:
                    unfolded[k] += m
    return unfolded


def month_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar month holding ``day``: its first and last day."""
    first = day.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following - dt.timedelta(days=1)


VALUE_COLUMNS = (
    *(f"{p}_{side}" for p in PAIRS for side in "nd"),
    "overdue_completed",
    *(f"bad_{k}" for k in BAD_KEYS),
    "evaluated",
    "appeal_excluded",
)


async def _sum_month(conn: AsyncConnection, hall: str, day: dt.date) -> None:
    """The month's rows of ``hall`` again from its days."""
    first, last = month_of(day)
    r, m = indicator_rollups, indicator_rollups_monthly
    await conn.execute(delete(m).where(m.c.hall_id == hall, m.c.month == first))
    keys = [r.c[c] for c in GROUP_COLUMNS]
    summed = (
        select(
            r.c.hall_id,
            literal(first, m.c.month.type).label("month"),
            *keys,
            *(func.sum(r.c[v]) for v in VALUE_COLUMNS),
        )
        .where(r.c.hall_id == hall, r.c.business_day >= first, r.c.business_day <= last)
        .group_by(r.c.hall_id, *keys)
    )
    names = ["hall_id", "month", *GROUP_COLUMNS, *VALUE_COLUMNS]
    await conn.execute(insert(m).from_select(names, summed))


async def _window_days(conn: AsyncConnection, hall: str, day: dt.date) -> None:
    """The windows ``hall`` saw in the month of ``day``, from its window rows, with the days."""
    first, last = month_of(day)
    r, w = indicator_rollups, rollup_window_days
    seen = await conn.execute(
        select(r.c.window, r.c.department, r.c.business_day).where(
            r.c.hall_id == hall,
            r.c.grouping == Grouping.WINDOW.value,
            r.c.business_day >= first,
            r.c.business_day <= last,
        )
    )
    days: Counter[tuple[str, str]] = Counter()
    for window, department, on in seen:
        days[(window, department)] |= 1 << (on.day - 1)
    await conn.execute(delete(w).where(w.c.hall_id == hall, w.c.month == first))
    rows = [
        {"hall_id": hall, "month": first, "window": win, "department": dep, "days": bits}
        for (win, dep), bits in sorted(days.items())
    ]
    if rows:
        await conn.execute(insert(w), rows)


async def _sum_evaluated_month(conn: AsyncConnection, hall: str, day: dt.date) -> None:
    """评价率's month rows of ``hall``: evaluation days inside the month become its first or
    last day (a range holding the month holds them)."""
    first, last = month_of(day)
    e, m = rollup_evaluated, rollup_evaluated_monthly
    await conn.execute(delete(m).where(m.c.hall_id == hall, m.c.month == first))
    # a subquery: PostgreSQL cannot match a CASE with parameters in GROUP BY to the select list
    days = (
        select(
            e.c.hall_id,
            *(e.c[c] for c in GROUP_COLUMNS),
            case(
                (e.c.before_day >= first, literal(first, e.c.before_day.type)), else_=e.c.before_day
            ).label("before_day"),
            case(
                (e.c.after_day <= last, literal(last, e.c.after_day.type)), else_=e.c.after_day
            ).label("after_day"),
            e.c.cases,
        )
        .where(e.c.hall_id == hall, e.c.accepted_day >= first, e.c.accepted_day <= last)
        .subquery()
    )
    keys = [days.c[c] for c in ("hall_id", *GROUP_COLUMNS, "before_day", "after_day")]
    summed = select(
        days.c.hall_id,
        literal(first, m.c.month.type).label("month"),
        *keys[1:],
        func.sum(days.c.cases),
    ).group_by(*keys)
    names = ["hall_id", "month", *GROUP_COLUMNS, "before_day", "after_day", "cases"]
    await conn.execute(insert(m).from_select(names, summed))


async def rebuild(engine: AsyncEngine, calendar: WorkCalendar, since: dt.date | None = None) -> int:
    """Recompute the rollups of every correlated hall-day (from ``since``), one transaction
    each; the number done."""
    d = correlation_days
    query = select(d.c.hall_id, d.c.business_day).order_by(d.c.business_day, d.c.hall_id)
    if since is not None:
        query = query.where(d.c.business_day >= since)
    async with engine.connect() as conn:
        hall_days = (await conn.execute(query)).all()
    for hall, day in hall_days:
        async with engine.begin() as conn:
            await refresh_day(conn, hall, day, calendar)
    return len(hall_days)
