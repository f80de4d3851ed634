"""Indicator facts from the store: cases, service sessions, current correlation results and
presence periods, for a date range, a hall and a department (``central.rules.indicators``).

Scoping by department: its cases; the evaluations correlated to one of its cases; the sessions
that produced one of its cases or ran at a window the roster gives it; presence at its windows.
A session whose ticket issue (TK) was never seen has no waiting time and is left out of the
queue indicators; an OPEN or INTERRUPTED session is not an outcome the indicators know.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.reporting import halls
from central.reporting.registry import Halls, hall_clause
from central.rules.indicators import (
    CaseFact,
    CaseStatus,
    DateRange,
    EvaluationFact,
    Grouping,
    GroupKey,
    HallSetup,
    Indicators,
    SessionFact,
    SessionOutcome,
    Span,
    StaffingFact,
    compute,
)
from central.rules.timelimit import CaseClock, ClockSuspended, Suspension, deadline
from central.rules.timelimit import suspended_workdays as lost_days
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.store.schema import case_suspensions, cases
from central.store.schema_correlation import (
    correlation_days,
    correlation_heads,
    correlation_results,
    followups,
    presence_periods,
    service_sessions,
)

_OUTCOMES = {o.value: o for o in SessionOutcome}


@dataclass
class Facts:
    cases: list[CaseFact] = field(default_factory=list)
    sessions: list[SessionFact] = field(default_factory=list)
    evaluations: list[EvaluationFact] = field(default_factory=list)
    case_evaluations: list[EvaluationFact] = field(default_factory=list)  # one per linked case
    staffing: list[StaffingFact] = field(default_factory=list)
    halls: dict[str, HallSetup] = field(default_factory=dict)
    # per hall, when its queue feed reported (在岗率 counts only that time); None: not known
    reporting: dict[str, list[Span]] | None = None


def case_status(row: Any) -> tuple[CaseStatus, dt.datetime | None]:
    try:
        status = CaseStatus(row.status)
    except ValueError:
        status = CaseStatus.RUNNING
    if status is CaseStatus.COMPLETED and row.completed_at is None:
        return CaseStatus.RUNNING, None
    if status is not CaseStatus.COMPLETED and row.completed_at is not None:
        return (
            (status, None)
            if status is CaseStatus.WITHDRAWN
            else (CaseStatus.COMPLETED, row.completed_at)
        )
    return status, row.completed_at


def case_fact(row: Any, suspensions: Sequence[Any], calendar: WorkCalendar) -> CaseFact:
    status, completed_at = case_status(row)
    clock = CaseClock(
        accepted_at=row.accepted_at,
        legal_days=row.legal_days,
        promised_days=row.promised_days,
        completed_at=completed_at,
        suspensions=tuple(
            Suspension(start=s.started_at, end=s.ended_at, reason=s.reason)
            for s in sorted(suspensions, key=lambda s: s.started_at)
        ),
    )
    try:
        due: dt.date | None = deadline(clock, calendar)
    except ClockSuspended:
        due = None
    lost = 0 if completed_at is None else lost_days(clock, business_date(completed_at), calendar)
    return CaseFact(
        case_no=row.case_no,
        hall=row.hall_id,
        department=row.department,
        window=None if row.window is None else str(row.window),
        staff=row.staff,
        item=row.item_code,
        accepted_at=row.accepted_at,
        completed_at=completed_at,
        legal_days=row.legal_days,
        promised_days=row.promised_days,
        deadline=due,
        status=status,
        suspended_days=lost,
    )


async def load(
    conn: AsyncConnection,
    period: DateRange,
    calendar: WorkCalendar,
    *,
    hall: Halls = None,
    department: str | None = None,
) -> Facts:
    facts = Facts()
    start, end = day_start(period.first), day_start(period.last + dt.timedelta(days=1))
    # cases: accepted by the end, and not completed before the start
    query = select(cases).where(
        cases.c.accepted_at < end,
        or_(cases.c.completed_at.is_(None), cases.c.completed_at >= start),
    )
    if hall is not None:
        query = query.where(hall_clause(cases.c.hall_id, hall))
    case_rows = (await conn.execute(query)).all()
    pauses: dict[str, list[Any]] = defaultdict(list)
    numbers = [r.case_no for r in case_rows]
    for i in range(0, len(numbers), 500):
        for pause in await conn.execute(
            select(case_suspensions).where(case_suspensions.c.case_no.in_(numbers[i : i + 500]))
        ):
            pauses[pause.case_no].append(pause)
    all_cases = [case_fact(r, pauses[r.case_no], calendar) for r in case_rows]

    stored = await halls.stored_setups(conn)
    seen_halls = {c.hall for c in all_cases} | ({hall} if isinstance(hall, str) else set())

    r, h = correlation_results, correlation_heads
    query = (
        select(r)
        .select_from(
            h.join(
                r,
                and_(
                    r.c.gateway_id == h.c.gateway_id, r.c.seq == h.c.seq, r.c.version == h.c.version
                ),
            )
        )
        .where(h.c.business_day >= period.first, h.c.business_day <= period.last)
    )
    if hall is not None:
        query = query.where(hall_clause(h.c.hall_id, hall))
    results = (await conn.execute(query)).all()

    s = service_sessions
    query = select(s).where(
        s.c.business_day >= period.first, s.c.business_day <= period.last, s.c.window.is_not(None)
    )
    if hall is not None:
        query = query.where(hall_clause(s.c.hall_id, hall))
    session_rows = (await conn.execute(query)).all()

    p = presence_periods
    query = select(p).where(p.c.business_day >= period.first, p.c.business_day <= period.last)
    if hall is not None:
        query = query.where(hall_clause(p.c.hall_id, hall))
    presence_rows = (await conn.execute(query)).all()

    facts.reporting = await _reporting(conn, period, hall)
    seen_halls |= {x.hall_id for x in (*results, *session_rows, *presence_rows)}
    by_hall_cases: dict[str, list[tuple[int | None, str]]] = defaultdict(list)
    for row in case_rows:
        by_hall_cases[row.hall_id].append((row.window, row.department))
    facts.halls = {
        name: halls.with_defaults(name, stored.get(name), by_hall_cases[name])
        for name in sorted(seen_halls)
    }

    def roster_department(hall_id: str, window: int | None) -> str | None:
        setup = facts.halls.get(hall_id)
        return None if setup is None or window is None else setup.windows.get(str(window))

    department_cases = (
        None if department is None else {c.case_no for c in all_cases if c.department == department}
    )
    facts.cases = [c for c in all_cases if department is None or c.department == department]

    excluded = await appeal_excluded(conn)
    for row in results:
        if department_cases is not None and not department_cases.intersection(row.case_nos):
            continue
        base = EvaluationFact(
            hall=row.hall_id,
            window=str(row.window),
            staff=row.staff,
            key=row.key,
            case_no=row.case_nos[0] if row.case_nos else None,
            counted=row.counted,
            evaluated_at=row.evaluated_at,
            excluded=(row.gateway_id, row.seq) in excluded,
        )
        facts.evaluations.append(base)
        facts.case_evaluations += [replace(base, case_no=n) for n in row.case_nos]

    for row in session_rows:
        outcome = _OUTCOMES.get(row.outcome)
        if outcome is None or row.queued_at is None:
            continue
        if department_cases is not None and not (
            department_cases.intersection(row.case_nos)
            or roster_department(row.hall_id, row.window) == department
        ):
            continue
        facts.sessions.append(
            SessionFact(
                hall=row.hall_id,
                window=str(row.window),
                staff=row.staff,
                ticket=row.ticket,
                issued_at=row.queued_at,
                called_at=row.called_at,
                started_at=row.started_at,
                finished_at=row.ended_at,
                outcome=outcome,
                case_nos=tuple(row.case_nos),
            )
        )

    for row in presence_rows:
        if department is not None and roster_department(row.hall_id, row.window) != department:
            continue
        facts.staffing.append(
            StaffingFact(
                hall=row.hall_id,
                window=str(row.window),
                staff=row.staff,
                start=row.start,
                end=row.end,
            )
        )
    if department is not None:  # a department's own windows only, in every hall
        facts.halls = {
            name: setup.model_copy(
                update={"windows": {w: d for w, d in setup.windows.items() if d == department}}
            )
            for name, setup in facts.halls.items()
        }
    return facts


async def appeal_excluded(conn: AsyncConnection) -> set[tuple[str, int]]:
    """The evaluations (gateway, seq) an upheld appeal took out (申诉核减): few, so all of them."""
    f = followups
    rows = await conn.execute(select(f.c.gateway_id, f.c.seq).where(f.c.excluded.is_(True)))
    return {(r.gateway_id, r.seq) for r in rows}


async def _reporting(
    conn: AsyncConnection, period: DateRange, hall: Halls
) -> dict[str, list[Span]]:
    """Per hall, the spans its queue feed reported on the correlated days of the period. A day
    correlated before spans were recorded counts as reporting all day (as it did then)."""
    d = correlation_days
    query = select(d.c.hall_id, d.c.business_day, d.c.reporting).where(
        d.c.business_day >= period.first, d.c.business_day <= period.last
    )
    if hall is not None:
        query = query.where(hall_clause(d.c.hall_id, hall))
    out: dict[str, list[Span]] = defaultdict(list)
    for row in await conn.execute(query):
        if row.reporting is None:
            out[row.hall_id].append(
                (day_start(row.business_day), day_start(row.business_day + dt.timedelta(days=1)))
            )
            continue
        out[row.hall_id] += [
            (dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)) for a, b in row.reporting
        ]
    return dict(out)


def indicators(
    facts: Facts, period: DateRange, by: Grouping, calendar: WorkCalendar
) -> dict[GroupKey, Indicators]:
    """``compute`` over the facts. 评价率 counts a case as evaluated when an evaluation that
    covers it counts (一次办多件: one evaluation covers each case of its session), so it comes
    from a second pass with one evaluation fact per linked case; every other indicator from the
    first, with one fact per evaluation."""
    common: Mapping[str, Any] = {
        "cases": facts.cases,
        "sessions": facts.sessions,
        "staffing": facts.staffing,
        "halls": list(facts.halls.values()),
        "reporting": facts.reporting,
    }
    main = compute(period, by, calendar, evaluations=facts.evaluations, **common)
    rates = compute(period, by, calendar, evaluations=facts.case_evaluations, **common)
    return {
        key: replace(value, evaluation_rate=rates[key].evaluation_rate) if key in rates else value
        for key, value in main.items()
    }
