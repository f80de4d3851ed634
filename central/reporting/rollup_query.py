"""Indicators over a date range from the daily rollups (``central.reporting.rollups``): the
same answer as ``compute`` over every fact of the range, from sums of a few rows per hall-day
(per hall-month for the whole months inside the range).

Three parts are not sums of days and are completed here: 评价率's numerator (cases accepted in
the range with a counted evaluation inside it; those evaluated on their acceptance day are
summed with the rows), 在岗率覆盖's denominator (every opening minute
of every working day of the range, for each window the range saw in a hall, also on days the
hall sent nothing) and 超时未办结 (open at the range's end, from the deadlines the ladder keeps).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Subquery, Table, and_, case, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from central.reporting import analytic
from central.reporting import halls as hall_setups
from central.reporting.registry import Halls, hall_clause
from central.reporting.rollups import FIELDS, VALUE_COLUMNS, month_of
from central.rules.indicators import (
    DateRange,
    Grouping,
    GroupKey,
    Indicators,
    Ratio,
)
from central.rules.scale import DeviceKey
from central.rules.workdays import WorkCalendar, day_start
from central.store.schema import cases
from central.store.schema_cases import case_ladder
from central.store.schema_rollups import (
    BAD_KEYS,
    GROUP_COLUMNS,
    indicator_rollups,
    indicator_rollups_monthly,
    rollup_evaluated,
    rollup_evaluated_monthly,
    rollup_window_days,
)

_KEYS = {  # the rollup columns that make a group of each grouping
    Grouping.ALL: (),
    Grouping.HALL: ("hall_id",),
    Grouping.DEPARTMENT: ("hall_id", "department"),
    Grouping.WINDOW: ("hall_id", "window"),
    Grouping.STAFF: ("hall_id", "staff"),
}
_DAY = dt.timedelta(days=1)
_VALUES = VALUE_COLUMNS


def _source(by: Grouping) -> str:
    return (Grouping.HALL if by is Grouping.ALL else by).value


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


# A group while an answer is put together: the values of ``_KEYS[by]`` as a plain tuple (hashed
# in C; a ``GroupKey``'s hash is Python code, and an answer looks each group up ~10 times)
Raw = tuple[str | None, ...]


def _raw(by: Grouping, values: Sequence[Any]) -> Raw:
    """The group of a result row whose first columns are ``_KEYS[by]``' (or the cases')."""
    if by is Grouping.ALL:
        return ()
    if by is Grouping.HALL:
        return (values[0],)
    return (values[0], _text(values[1]))


def _key(by: Grouping, raw: Raw) -> GroupKey:
    if by is Grouping.ALL:
        return GroupKey()
    if by is Grouping.DEPARTMENT:
        return GroupKey(hall=raw[0], department=raw[1])
    if by is Grouping.WINDOW:
        return GroupKey(hall=raw[0], window=raw[1])
    if by is Grouping.STAFF:
        return GroupKey(hall=raw[0], staff=raw[1])
    return GroupKey(hall=raw[0])


def _order(raw: Raw) -> tuple[str, ...]:
    """``GroupKey.sort_key``'s order (one grouping's fields only are set)."""
    return tuple(v or "" for v in raw)


# where each figure sits in a summed row (after the group's key columns)
_AT = {name: i for i, name in enumerate(_VALUES)}
# each pair's numerator (its denominator follows it), looked up once
_ON_TIME, _HANDLING, _PROMISE, _SPEEDUP, _EARLY, _SAME_DAY = (
    _AT[f"{p}_n"] for p in ("on_time", "handling", "promise", "speedup", "early", "same_day")
)
_SATISFIED, _WAIT, _NO_SHOW, _STAFFED, _COVERED = (
    _AT[f"{p}_n"] for p in ("satisfied", "wait", "no_show", "staffed", "covered")
)
assert all(_AT[f"{p}_d"] == _AT[f"{p}_n"] + 1 for p in FIELDS)
_OVERDUE_COMPLETED, _EVALUATED = _AT["overdue_completed"], _AT["evaluated"]
_APPEAL_EXCLUDED = _AT["appeal_excluded"]
_BAD = tuple((DeviceKey(k), _AT[f"bad_{k}"]) for k in BAD_KEYS)
_ZERO = (0,) * len(_VALUES)


def pieces(
    period: DateRange,
) -> tuple[list[tuple[dt.date, dt.date]], tuple[dt.date, dt.date] | None]:
    """The range as spans of days read from the daily rows and the whole months between them
    (first day of the first, last day of the last) read from the monthly rows."""
    first = period.first if period.first.day == 1 else month_of(period.first)[1] + _DAY
    end = month_of(period.last)
    last = period.last if end[1] == period.last else end[0] - _DAY
    if first > last:
        return [(period.first, period.last)], None
    days = [(a, b) for a, b in ((period.first, first - _DAY), (last + _DAY, period.last)) if a <= b]
    return days, (first, last)


def _rows(
    tables: tuple[Table, Table],
    day: str,
    period: DateRange,
    grouping: str,
    hall: Halls,
    columns: Sequence[str],
) -> Subquery:
    """``columns`` of the rows of ``grouping`` in the range: daily rows for its loose days,
    monthly rows for its whole months."""
    daily, monthly = tables
    days, months = pieces(period)
    parts = [
        select(*(daily.c[c] for c in columns)).where(
            daily.c.grouping == grouping,
            daily.c[day] >= a,
            daily.c[day] <= b,
            hall_clause(daily.c.hall_id, hall),
        )
        for a, b in days
    ]
    if months is not None:
        parts.append(
            select(*(monthly.c[c] for c in columns)).where(
                monthly.c.grouping == grouping,
                monthly.c.month >= months[0],
                monthly.c.month <= months[1],
                hall_clause(monthly.c.hall_id, hall),
            )
        )
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()


async def indicators(
    conn: AsyncConnection,
    period: DateRange,
    by: Grouping,
    calendar: WorkCalendar,
    *,
    hall: Halls = None,
    open_cases: bool = True,
    coverage: bool = True,
) -> dict[GroupKey, Indicators]:
    """Every indicator per group of ``by`` over ``period``, for the halls ``hall`` names.
    ``open_cases=False`` leaves out 超时未办结 and the groups only open cases make;
    ``coverage=False`` leaves 在岗率覆盖 as the rows' own sums (its denominator then misses
    the opening minutes of days without data). The overview's two rates need neither."""
    found = await indicators_by(
        conn, period, (by,), calendar, hall=hall, open_cases=open_cases, coverage=coverage
    )
    return found[by]


async def indicators_by(
    conn: AsyncConnection,
    period: DateRange,
    groupings: Sequence[Grouping],
    calendar: WorkCalendar,
    *,
    hall: Halls = None,
    open_cases: bool = True,
    coverage: bool = True,
) -> dict[Grouping, dict[GroupKey, Indicators]]:
    """``indicators`` for several groupings at once (the 通报's halls and departments): the
    open cases and the windows for 在岗率覆盖 are read once, grouped by the finest key the
    groupings need, and added up per grouping."""
    await analytic.settle(conn)
    minutes = await _coverage(conn, period, groupings, calendar, hall) if coverage else {}
    overdue = await _open_at_end(conn, period, groupings, calendar, hall) if open_cases else {}
    out = {}
    for by in groupings:
        sums = await _sums(conn, period, by, hall)
        evaluated = await _evaluated(conn, period, by, hall)
        covered, late = minutes.get(by, {}), overdue.get(by, {})
        with analytic.collector_paused():
            built = [
                _built(
                    _key(by, raw),
                    sums.get(raw, _ZERO),
                    covered.get(raw),
                    late.get(raw, 0),
                    evaluated.get(raw, 0),
                )
                # a group with only cases open all along has no rollup row (its days add nothing)
                for raw in sorted(sums.keys() | late.keys(), key=_order)
            ]
            out[by] = {b.group: b for b in built}
    return out


async def _sums(
    conn: AsyncConnection, period: DateRange, by: Grouping, hall: Halls
) -> dict[Raw, Sequence[Any]]:
    """The rollup rows of ``by`` summed per group over the range (figures at ``_AT``)."""
    rows = _rows(
        (indicator_rollups, indicator_rollups_monthly),
        "business_day",
        period,
        _source(by),
        hall,
        ("hall_id", *GROUP_COLUMNS, *_VALUES),
    )
    cols = [rows.c[name] for name in _KEYS[by]]
    query = select(*cols, *(func.sum(rows.c[v]).label(v) for v in _VALUES)).group_by(*cols)
    width, same_day_d = len(cols), _AT["same_day_d"]
    result = await conn.execute(query)
    with analytic.collector_paused():  # 20,000 rows of 40 figures
        # plain tuples, positions known in advance: 20,000 groups are built in Python
        return {
            _raw(by, row): row[width:]
            for row in result.all()  # one fetch, not one call a row
            if row[width + same_day_d] is not None  # not Grouping.ALL's row over no rows
        }


def _fold(
    rows: Sequence[Sequence[Any]],
    names: Sequence[str],
    groupings: Sequence[Grouping],
    value: Callable[[Sequence[Any]], float],
) -> dict[Grouping, dict[Raw, float]]:
    """Rows keyed by the columns ``names`` (then their figures) added up per group of each
    grouping; a row with no value for a grouping's column is in no group of it."""
    out: dict[Grouping, dict[Raw, float]] = {}
    with analytic.collector_paused():
        for by in groupings:
            at = [names.index(n) for n in _KEYS[by]]
            summed: dict[Raw, float] = {}
            for row in rows:
                values = [row[i] for i in at]
                if None in values:
                    continue
                key = _raw(by, values)
                summed[key] = summed.get(key, 0) + value(row)
            out[by] = summed
    return out


def _finest(groupings: Sequence[Grouping]) -> list[str]:
    """The key columns that make every group of ``groupings``: the hall's, then the others'."""
    names = ["hall_id"]
    for by in groupings:
        names += [n for n in _KEYS[by] if n not in names]
    return names


def _built(
    key: GroupKey, row: Sequence[Any], minutes: float | None, overdue_open: int, evaluated: int
) -> Indicators:
    """One group's indicators from its summed row (figures at ``_AT``) and the parts completed
    apart: 在岗率覆盖's denominator (``minutes``), 超时未办结 and the cases evaluated on other
    days than their acceptance. Written out field by field: an answer builds 20,000 of them."""
    bad = {k: int(row[i]) for k, i in _BAD}
    covered = row[_COVERED + 1] if minutes is None else minutes
    return Indicators(
        group=key,
        on_time_rate=Ratio(row[_ON_TIME], row[_ON_TIME + 1]),
        avg_handling_days=Ratio(row[_HANDLING], row[_HANDLING + 1]),
        overdue_completed=int(row[_OVERDUE_COMPLETED]),
        overdue_open=overdue_open,
        promise_speedup=Ratio(row[_PROMISE], row[_PROMISE + 1]),
        handling_speedup=Ratio(row[_SPEEDUP], row[_SPEEDUP + 1]),
        early_completion_rate=Ratio(row[_EARLY], row[_EARLY + 1]),
        same_day_rate=Ratio(row[_SAME_DAY], row[_SAME_DAY + 1]),
        satisfaction_rate=Ratio(row[_SATISFIED], row[_SATISFIED + 1]),
        evaluation_rate=Ratio(int(row[_EVALUATED]) + evaluated, row[_SAME_DAY + 1]),
        bad_reviews=bad,
        bad_review_rate=Ratio(sum(bad.values()), row[_SATISFIED + 1]),
        avg_wait_minutes=Ratio(row[_WAIT], row[_WAIT + 1]),
        no_show_rate=Ratio(row[_NO_SHOW], row[_NO_SHOW + 1]),
        staffed_rate=Ratio(row[_STAFFED], row[_STAFFED + 1]),
        staffed_coverage=Ratio(row[_COVERED], covered),
        appeal_excluded=int(row[_APPEAL_EXCLUDED]),
    )


async def daily(
    conn: AsyncConnection, period: DateRange, calendar: WorkCalendar, *, hall: Halls = None
) -> list[tuple[dt.date, Indicators | None]]:
    """One ``Grouping.ALL`` result per day of ``period`` (a trend, as ``scorecard.daily``
    computes it from the facts): each day's own figures, without 超时未办结 (a period's
    figure, not a trend's), with 在岗率覆盖 over every window the period saw; None for a day
    without rollup rows that is not a working day. One read of the days' hall rows."""
    await analytic.settle(conn)
    r, e = indicator_rollups, rollup_evaluated
    in_range = (r.c.business_day >= period.first, r.c.business_day <= period.last)
    query = (
        select(r.c.business_day, *(func.sum(r.c[v]) for v in _VALUES))
        .where(r.c.grouping == Grouping.HALL.value, *in_range, hall_clause(r.c.hall_id, hall))
        .group_by(r.c.business_day)
    )
    sums = {row[0]: row[1:] for row in (await conn.execute(query)).all()}
    # a case evaluated on its acceptance day while its group had no row for it
    query = (
        select(e.c.accepted_day, func.sum(e.c.cases))
        .where(
            e.c.grouping == Grouping.HALL.value,
            e.c.accepted_day >= period.first,
            e.c.accepted_day <= period.last,
            e.c.after_day == e.c.accepted_day,
            hall_clause(e.c.hall_id, hall),
        )
        .group_by(e.c.accepted_day)
    )
    evaluated = {day: int(n) for day, n in await conn.execute(query)}
    # 在岗率覆盖 as a day of the range sees it: the opening minutes of that working day for
    # every window the range saw (a day without data is uncovered time of those windows)
    workdays = set(calendar.workdays_in(period.first, period.last))
    ranged = await _coverage(conn, period, (Grouping.ALL,), calendar, hall)
    seen_all = ranged.get(Grouping.ALL, {}).get((), 0.0)
    minutes = seen_all / len(workdays) if workdays else 0.0
    out: list[tuple[dt.date, Indicators | None]] = []
    for day in period.days():
        seen = minutes if day in workdays else 0.0
        if day not in sums and not seen:
            out.append((day, None))
            continue
        extra = evaluated.get(day, 0)
        out.append((day, _built(GroupKey(), sums.get(day, _ZERO), seen, 0, extra)))
    return out


async def _evaluated(
    conn: AsyncConnection, period: DateRange, by: Grouping, hall: Halls
) -> dict[Raw, int]:
    """评价率's numerator: accepted in the range and covered by a counted evaluation in it."""
    rows = _rows(
        (rollup_evaluated, rollup_evaluated_monthly),
        "accepted_day",
        period,
        _source(by),
        hall,
        ("hall_id", *GROUP_COLUMNS, "before_day", "after_day", "cases"),
    )
    cols = [rows.c[name] for name in _KEYS[by]]
    query = (
        select(*cols, func.sum(rows.c.cases).label("cases"))
        .where(or_(rows.c.before_day >= period.first, rows.c.after_day <= period.last))
        .group_by(*cols)
    )
    return {
        _raw(by, row): int(row.cases)
        for row in (await conn.execute(query)).all()
        if row.cases is not None  # not Grouping.ALL's one row over no rows at all
    }


async def _coverage(
    conn: AsyncConnection,
    period: DateRange,
    groupings: Sequence[Grouping],
    calendar: WorkCalendar,
    hall: Halls,
) -> dict[Grouping, dict[Raw, float]]:
    """在岗率覆盖's denominator for the window-based groupings: all opening minutes of the
    range's working days for every window the range saw (a day without data is uncovered).
    Counted in the database: the windows per hall (and department or window as needed), a
    window's department the roster's it had in the range (the greatest if it changed)."""
    wanted = [by for by in groupings if by is not Grouping.STAFF]
    if not wanted:
        return {}
    w = rollup_window_days
    seen = (
        select(
            w.c.hall_id,
            w.c.window,
            func.max(func.nullif(w.c.department, "")).label("department"),
        )
        .where(_days_in(period), hall_clause(w.c.hall_id, hall))
        .group_by(w.c.hall_id, w.c.window)
        .subquery()
    )
    names = _finest(wanted)
    cols = [seen.c[n] for n in names]
    rows = (await conn.execute(select(*cols, func.count()).group_by(*cols))).all()
    opening = await _opening_minutes(conn, {row[0] for row in rows})
    workdays = len(calendar.workdays_in(period.first, period.last))
    return _fold(rows, names, wanted, lambda row: opening[row[0]] * workdays * row[-1])


async def _opening_minutes(conn: AsyncConnection, halls: set[str]) -> dict[str, float]:
    """The opening minutes of a working day of each hall (its stored setup, else the default),
    worked out once a hall rather than once a window."""
    stored = await hall_setups.stored_setups(conn, sorted(halls))
    return {
        h: float(sum(p.minutes for p in hall_setups.with_defaults(h, stored.get(h)).opening))
        for h in halls
    }


def _days_in(period: DateRange) -> ColumnElement[bool]:
    """The ``rollup_window_days`` rows with a day inside ``period``: its whole months, and the
    days' bits of the months it holds in part."""
    w = rollup_window_days
    days, months = pieces(period)
    terms = [
        and_(w.c.month == month_of(a)[0], w.c.days.op("&")(day_bits(a, b)) != 0)
        for first, last in days
        for a, b in by_month(first, last)
    ]
    if months is not None:
        terms.append(and_(w.c.month >= months[0], w.c.month <= months[1]))
    return or_(*terms)


def by_month(first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    """``first`` … ``last`` cut at the months' ends."""
    out = []
    while first <= last:
        end = min(last, month_of(first)[1])
        out.append((first, end))
        first = end + _DAY
    return out


def day_bits(first: dt.date, last: dt.date) -> int:
    """The bits of the days ``first`` … ``last`` of one month (bit d-1 for day d)."""
    return (1 << last.day) - (1 << (first.day - 1))


def _last_workday(calendar: WorkCalendar, day: dt.date) -> dt.date | None:
    days = calendar.workdays_in(day - dt.timedelta(days=60), day)
    return days[-1] if days else None


async def _open_at_end(
    conn: AsyncConnection,
    period: DateRange,
    groupings: Sequence[Grouping],
    calendar: WorkCalendar,
    hall: Halls,
) -> dict[Grouping, dict[Raw, int]]:
    """Per group of the cases open at the range's end, those whose deadline lies at least one
    working day before its last day (before the last working day on or before it). Grouped in
    the database by the finest key the groupings need (one read for the 通报's halls and
    departments), and the open cases found through ``completed_at``'s index (open now, or
    completed after the range)."""
    limit = _last_workday(calendar, period.last) or dt.date.min
    end = day_start(period.last + dt.timedelta(days=1))
    c = cases
    names = _finest(groupings) if any(by is not Grouping.ALL for by in groupings) else []
    cols = [c.c[name] for name in names]  # the cases name them alike
    query = (
        select(*cols, func.sum(case((case_ladder.c.deadline < limit, 1), else_=0)).label("n"))
        .select_from(c.outerjoin(case_ladder, case_ladder.c.case_no == c.c.case_no))
        .where(
            or_(c.c.completed_at.is_(None), c.c.completed_at >= end),
            c.c.accepted_at < end,
            c.c.status != "withdrawn",
            hall_clause(c.c.hall_id, hall),
        )
        .group_by(*cols)
    )
    # not Grouping.ALL's one row over no cases at all
    rows = [row for row in (await conn.execute(query)).all() if row[-1] is not None]
    folded = _fold(rows, names, groupings, lambda row: int(row[-1]))
    return {by: {key: int(n) for key, n in found.items()} for by, found in folded.items()}
