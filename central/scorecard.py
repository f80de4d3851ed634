"""Indicators (效能指标) from the store, within a caller's scope, for the dashboard's overview,
drill-down and monthly bulletin.

Loads the facts ``central.rules.indicators.compute`` takes: cases from ``cases`` (deadline
from the ladder's projection when it is current, else computed), and, once correlation has
stored them, counted evaluations, service sessions, staff presence and hall setups. The
correlation tables are looked up on the shared metadata rather than imported, so the dashboard
shows its case figures (and honest "no data" for the rest) on a central without correlation.

Scope follows the API's: supervisors and technicians every hall; a hall manager the hall; a
department leader the department's cases, the evaluations and sessions correlated to them and
the windows the hall rosters give the department.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.auth import Principal, Role
from central.cases.store import clock_of
from central.rules.indicators import (
    CaseFact,
    CaseStatus,
    DateRange,
    EvaluationFact,
    Grouping,
    GroupKey,
    HallSetup,
    Indicators,
    OpeningPeriod,
    SessionFact,
    SessionOutcome,
    StaffingFact,
    compute,
)
from central.rules.timelimit import ClockSuspended, deadline, suspended_workdays
from central.rules.workdays import WorkCalendar, business_date, day_start
from central.store.schema import case_suspensions, cases, metadata
from central.store.schema_cases import case_ladder

# What a hall nobody configured is assumed to open (a Chinese service hall's usual hours).
DEFAULT_OPENING = (OpeningPeriod(start=dt.time(9), end=dt.time(12)),
                   OpeningPeriod(start=dt.time(13), end=dt.time(17)))
_SESSION_OUTCOMES = {o.value: o for o in SessionOutcome}
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Facts:
    cases: list[CaseFact]
    evaluations: list[EvaluationFact]
    sessions: list[SessionFact]
    staffing: list[StaffingFact]
    halls: list[HallSetup]
    correlated: bool  # correlation's tables exist: evaluation/queue figures are real

    def compute(self, period: DateRange, by: Grouping, calendar: WorkCalendar
                ) -> dict[GroupKey, Indicators]:
        return compute(period, by, calendar, cases=self.cases, evaluations=self.evaluations,
                       sessions=self.sessions, staffing=self.staffing, halls=self.halls)


def _table(name: str) -> Table | None:
    return metadata.tables.get(name)


def case_scope(who: Principal) -> Any:
    if who.role in (Role.SUPERVISOR, Role.TECHNICIAN):
        return true()
    if who.role is Role.HALL_MANAGER and who.hall:
        return cases.c.hall_id == who.hall
    if who.role is Role.DEPARTMENT_LEADER and who.department:
        return cases.c.department == who.department
    return cases.c.case_no.is_(None)  # nothing


def hall_scope(who: Principal, column: Any) -> Any:
    """For hall-keyed tables; department leaders are narrowed afterwards, by case links."""
    if who.role is Role.HALL_MANAGER:
        return column == who.hall
    return true()


async def _case_facts(conn: AsyncConnection, who: Principal, period: DateRange,
                      calendar: WorkCalendar, hall: str | None) -> list[CaseFact]:
    lad = case_ladder.c
    query = (select(cases, lad.revision.label("l_revision"), lad.deadline.label("l_deadline"))
             .outerjoin(case_ladder, lad.case_no == cases.c.case_no)
             .where(case_scope(who),
                    cases.c.accepted_at < day_start(period.last + dt.timedelta(days=1)),
                    or_(cases.c.completed_at.is_(None),
                        cases.c.completed_at >= day_start(period.first))))
    if hall is not None:
        query = query.where(cases.c.hall_id == hall)
    rows = (await conn.execute(query)).all()
    held: dict[str, list[Any]] = {}
    numbers = [r.case_no for r in rows]
    for i in range(0, len(numbers), _CHUNK):
        for s in await conn.execute(select(case_suspensions).where(
                case_suspensions.c.case_no.in_(numbers[i:i + _CHUNK]))):
            held.setdefault(s.case_no, []).append(s)
    facts = []
    for r in rows:
        clock = clock_of(r, held.get(r.case_no, []))
        due: dt.date | None
        if r.l_revision == r.revision and r.l_deadline is not None:
            due = r.l_deadline
        else:
            try:
                due = deadline(clock, calendar)
            except ClockSuspended:
                due = None
        end = business_date(r.completed_at) if r.completed_at else period.last
        suspended = suspended_workdays(clock, max(end, clock.accepted_on), calendar)
        status = CaseStatus(r.status)
        facts.append(CaseFact(
            case_no=r.case_no, hall=r.hall_id, department=r.department,
            window=None if r.window is None else str(r.window), staff=r.staff,
            item=r.item_code, accepted_at=r.accepted_at,
            completed_at=r.completed_at if status is CaseStatus.COMPLETED else None,
            legal_days=r.legal_days, promised_days=r.promised_days, deadline=due,
            status=status, suspended_days=suspended))
    return facts


async def _setups(conn: AsyncConnection, halls: Iterable[str]) -> dict[str, HallSetup]:
    table = _table("hall_setups")
    wanted = sorted(set(halls))
    stored: dict[str, HallSetup] = {}
    if table is not None and wanted:
        for row in await conn.execute(select(table).where(table.c.hall_id.in_(wanted))):
            stored[row.hall_id] = HallSetup.model_validate(row.setup)
    return {h: stored.get(h) or HallSetup(hall=h, opening=DEFAULT_OPENING) for h in wanted}


async def _evaluation_facts(conn: AsyncConnection, who: Principal, period: DateRange,
                            hall: str | None, department_cases: set[str] | None
                            ) -> list[EvaluationFact]:
    results, heads = _table("correlation_results"), _table("correlation_heads")
    if results is None or heads is None:
        return []
    query = (select(results).join(heads, and_(
        heads.c.gateway_id == results.c.gateway_id, heads.c.seq == results.c.seq,
        heads.c.version == results.c.version))
        # 评价率 looks at every evaluation up to the period's end
        .where(results.c.business_day <= period.last, hall_scope(who, results.c.hall_id)))
    if hall is not None:
        query = query.where(results.c.hall_id == hall)
    facts = []
    for r in await conn.execute(query):
        linked = [str(c) for c in (r.case_nos or [])]
        if department_cases is not None:
            linked = [c for c in linked if c in department_cases]
            if not linked:
                continue
        # One fact per evaluation (satisfaction counts it once); it evaluates its first case.
        # Further linked cases get a fact dated before the period, which counts for 评价率
        # only (compute() reads satisfaction from in-period facts).
        facts.append(EvaluationFact(hall=r.hall_id, window=str(r.window), staff=r.staff,
                                    key=r.key, case_no=linked[0] if linked else None,
                                    counted=r.counted, evaluated_at=r.evaluated_at))
        before = day_start(period.first) - dt.timedelta(seconds=1)
        for extra in linked[1:]:
            facts.append(EvaluationFact(hall=r.hall_id, window=str(r.window), staff=r.staff,
                                        key=r.key, case_no=extra, counted=r.counted,
                                        evaluated_at=min(r.evaluated_at, before)))
    return facts


async def _session_facts(conn: AsyncConnection, who: Principal, period: DateRange,
                         hall: str | None, department_cases: set[str] | None
                         ) -> list[SessionFact]:
    table = _table("service_sessions")
    if table is None:
        return []
    query = select(table).where(table.c.business_day >= period.first,
                                table.c.business_day <= period.last,
                                hall_scope(who, table.c.hall_id))
    if hall is not None:
        query = query.where(table.c.hall_id == hall)
    facts = []
    for r in await conn.execute(query):
        outcome = _SESSION_OUTCOMES.get(r.outcome)
        if outcome is None or r.queued_at is None or r.window is None:
            continue  # not called, interrupted or still open: in no queue indicator
        linked = tuple(str(c) for c in (r.case_nos or []))
        if department_cases is not None and not department_cases.intersection(linked):
            continue
        facts.append(SessionFact(hall=r.hall_id, window=str(r.window), staff=r.staff,
                                 ticket=r.ticket, issued_at=r.queued_at, called_at=r.called_at,
                                 started_at=r.started_at, finished_at=r.ended_at,
                                 outcome=outcome, case_nos=linked))
    return facts


async def _staffing_facts(conn: AsyncConnection, who: Principal, period: DateRange,
                          hall: str | None) -> list[StaffingFact]:
    table = _table("presence_periods")
    if table is None:
        return []
    query = select(table).where(table.c.business_day >= period.first,
                                table.c.business_day <= period.last,
                                hall_scope(who, table.c.hall_id))
    if hall is not None:
        query = query.where(table.c.hall_id == hall)
    return [StaffingFact(hall=r.hall_id, window=str(r.window), staff=r.staff, start=r.start,
                         end=r.end) for r in await conn.execute(query)]


async def load(engine: AsyncEngine, who: Principal, period: DateRange, calendar: WorkCalendar,
               *, hall: str | None = None) -> Facts:
    """Every fact the caller may see for ``period`` (optionally one hall)."""
    async with engine.connect() as conn:
        case_facts = await _case_facts(conn, who, period, calendar, hall)
        leader = who.role is Role.DEPARTMENT_LEADER
        department_cases = await _department_cases(conn, who) if leader else None
        evaluations = await _evaluation_facts(conn, who, period, hall, department_cases)
        sessions = await _session_facts(conn, who, period, hall, department_cases)
        staffing = [] if leader else await _staffing_facts(conn, who, period, hall)
        halls = {c.hall for c in case_facts} | {e.hall for e in evaluations} | {
            s.hall for s in sessions} | {s.hall for s in staffing}
        setups = await _setups(conn, halls)
    if leader:
        # a department's windows, from the rosters: only those rows of the setups are kept
        setups = {h: s.model_copy(update={"windows": {
            w: d for w, d in s.windows.items() if d == who.department}})
            for h, s in setups.items()}
    return Facts(cases=case_facts, evaluations=evaluations, sessions=sessions,
                 staffing=staffing, halls=list(setups.values()),
                 correlated=correlation_installed())


def correlation_installed() -> bool:
    return _table("correlation_results") is not None


async def _department_cases(conn: AsyncConnection, who: Principal) -> set[str]:
    rows = await conn.execute(select(cases.c.case_no).where(case_scope(who)))
    return {r.case_no for r in rows}


def ratio(value: Any) -> dict[str, Any]:
    """A Ratio as JSON: numerator, denominator, value (None: no data, not 0 %)."""
    return {"numerator": value.numerator, "denominator": value.denominator,
            "value": value.value}


def indicators_doc(ind: Indicators) -> dict[str, Any]:
    """Every indicator of one group, as the API and the CSV give them."""
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
    }


def group_doc(key: GroupKey) -> dict[str, str | None]:
    return {"hall": key.hall, "department": key.department, "window": key.window,
            "staff": key.staff}


def sorted_groups(result: dict[GroupKey, Indicators]) -> Sequence[Indicators]:
    return [result[k] for k in sorted(result, key=GroupKey.sort_key)]


def narrowed(facts: Facts, *, department: str | None = None, window: str | None = None,
             staff: str | None = None) -> Facts:
    """The facts of one department (by the case's department, else the window's roster), one
    window or one staff member, for drilling down inside a hall."""
    roster = {(h.hall, w): d for h in facts.halls for w, d in h.windows.items()}

    def keep(hall: str, dep: str | None, win: str | None, person: str | None) -> bool:
        if department is not None and (dep or roster.get((hall, win or ""))) != department:
            return False
        if window is not None and win != window:
            return False
        return staff is None or person == staff

    return Facts(
        cases=[c for c in facts.cases if keep(c.hall, c.department, c.window, c.staff)],
        evaluations=[e for e in facts.evaluations if keep(e.hall, None, e.window, e.staff)],
        sessions=[s for s in facts.sessions if keep(s.hall, None, s.window, s.staff)],
        staffing=[s for s in facts.staffing if keep(s.hall, None, s.window, s.staff)],
        halls=facts.halls, correlated=facts.correlated)


def daily(facts: Facts, period: DateRange, calendar: WorkCalendar
          ) -> list[tuple[dt.date, Indicators | None]]:
    """One ``Grouping.ALL`` result per day of the period, from the facts of that day: cases
    accepted or completed on it, evaluations and sessions of it (plus earlier evaluations of
    that day's cases, for 评价率), staffing overlapping it; None for a day without any.
    Open-case counts (overdue_open) are left to the period figures."""
    by_day: dict[dt.date, list[Any]] = {d: [[], [], [], []] for d in period.days()}
    for c in facts.cases:
        days = {business_date(c.accepted_at)}
        if c.completed_at is not None:
            days.add(business_date(c.completed_at))
        for d in days & by_day.keys():
            by_day[d][0].append(c)
    for e in facts.evaluations:
        d = business_date(e.evaluated_at)
        if d in by_day:
            by_day[d][1].append(e)
    for s in facts.sessions:
        d = business_date(s.issued_at)
        if d in by_day:
            by_day[d][2].append(s)
    for s in facts.staffing:
        for d in {business_date(s.start), business_date(s.end)} & by_day.keys():
            by_day[d][3].append(s)
    evaluated_early: dict[str, list[EvaluationFact]] = {}
    for e in facts.evaluations:
        if e.case_no is not None:
            evaluated_early.setdefault(e.case_no, []).append(e)
    out = []
    for d, (day_cases, evaluations, sessions, staffing) in sorted(by_day.items()):
        own = {(e.case_no, e.evaluated_at) for e in evaluations}
        before = day_start(d)
        extra = [e for c in day_cases for e in evaluated_early.get(c.case_no, [])
                 if e.evaluated_at < before and (e.case_no, e.evaluated_at) not in own]
        result = compute(DateRange(d, d), Grouping.ALL, calendar, cases=day_cases,
                         evaluations=[*evaluations, *extra], sessions=sessions,
                         staffing=staffing, halls=facts.halls)
        out.append((d, next(iter(result.values()), None)))
    return out
