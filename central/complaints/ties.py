"""Tie a complaint to what the complainant named: the case (by 办件编号), the hall's window and
the staff member on duty there that day, and the department that owns it (归口).

The case, when its number exists, decides hall, window, staff and department. Otherwise the
staff member is the number given, else the name given as the hall's setup lists it, else the
one who served most at that window that day (service sessions, then cases); the department is
the one the hall's roster gives the window. Nothing found: the supervisors' triage queue."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.complaints.model import ComplaintIn
from central.reporting import halls as setups
from central.rules.workdays import day_start
from central.store.schema import cases
from central.store.schema_correlation import service_sessions

ROSTER_LOOK_BACK = dt.timedelta(days=90)  # cases read to infer a roster nobody configured


@dataclass(frozen=True, slots=True)
class Ties:
    hall: str | None
    window: int | None
    staff: str | None
    case_no: str | None
    department: str | None


async def _on_duty(conn: AsyncConnection, hall: str, window: int, day: dt.date) -> str | None:
    s = service_sessions.c
    found = await conn.execute(
        select(s.staff, func.count())
        .where(s.hall_id == hall, s.window == window, s.business_day == day, s.staff.is_not(None))
        .group_by(s.staff)
        .order_by(func.count().desc(), s.staff)
        .limit(1)
    )
    row = found.first()
    if row is not None:
        return str(row[0])
    c = cases.c
    served = await conn.execute(
        select(c.staff).where(
            c.hall_id == hall,
            c.window == window,
            c.staff.is_not(None),
            c.accepted_at >= day_start(day),
            c.accepted_at < day_start(day + dt.timedelta(days=1)),
        )
    )
    counts = Counter(str(r[0]) for r in served)
    return min(counts, key=lambda k: (-counts[k], k)) if counts else None


async def _window_department(
    conn: AsyncConnection, hall: str, window: int, now: dt.datetime
) -> str | None:
    stored = (await setups.stored_setups(conn, [hall])).get(hall)
    recent = await conn.execute(
        select(cases.c.window, cases.c.department).where(
            cases.c.hall_id == hall, cases.c.accepted_at >= now - ROSTER_LOOK_BACK
        )
    )
    setup = setups.with_defaults(hall, stored, [(r[0], r[1]) for r in recent])
    return setup.windows.get(str(window))


async def _staff_by_name(conn: AsyncConnection, hall: str, name: str) -> str | None:
    stored = (await setups.stored_setups(conn, [hall])).get(hall)
    if stored is None:
        return None
    numbers = sorted(n for n, given in stored.staff.items() if given == name)
    return numbers[0] if len(numbers) == 1 else None  # two of that name: do not guess


async def tie(conn: AsyncConnection, given: ComplaintIn, received_on: dt.date) -> Ties:
    now = day_start(received_on)
    if given.case_no:
        c = cases.c
        query = select(c.hall_id, c.window, c.staff, c.department).where(c.case_no == given.case_no)
        case = (await conn.execute(query)).first()
        if case is not None:
            return Ties(case.hall_id, case.window, case.staff, given.case_no, case.department)
    hall, window = given.hall, given.window
    if hall is None:
        return Ties(None, window, given.staff_number, None, None)
    staff = given.staff_number
    if staff is None and given.staff_name:
        staff = await _staff_by_name(conn, hall, given.staff_name)
    if staff is None and window is not None:
        staff = await _on_duty(conn, hall, window, given.day or received_on)
    department = None if window is None else await _window_department(conn, hall, window, now)
    return Ties(hall, window, staff, None, department)
