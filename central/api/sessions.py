"""Service sessions (one ticket served at one window) and staff presence, from the queue feed."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select

from central.api.correlation_scope import (
    FromDay,
    ToDay,
    decode_cursor,
    encode_cursor,
    period,
    scope_of,
)
from central.api.deps import Engine, EvaluationReader
from central.correlation.sessions import Outcome
from central.reporting import halls
from central.store.schema import cases
from central.store.schema_correlation import presence_periods, service_sessions

router = APIRouter(prefix="/api/v1", tags=["sessions"])


class SessionOut(BaseModel):
    session_id: str = Field(description="gateway:seq of the queue event that opened it")
    hall: str
    business_day: dt.date
    ticket: str
    service: str | None
    window: int | None
    staff: str | None
    staff_name: str | None = Field(
        default=None, description="工作人员姓名, where the hall's setup names them"
    )
    outcome: Outcome
    queued_at: dt.datetime | None = Field(description="ticket issued (or transferred here)")
    called_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    next_call_at: dt.datetime | None = Field(description="next ticket called at the window")
    next_start_at: dt.datetime | None = Field(
        default=None,
        description="the window's next service started: a press answering this "
        "session's invitation after it is LATE",
    )
    wait_minutes: float | None
    service_minutes: float | None
    recalls: int
    machine_times: dict[str, str] = Field(description="the queue machine's own clock, as is")
    time_sources: dict[str, str] = Field(
        description="where each stage's time came from: receive (the gateway's receive time) "
        "or machine_offset (received late after an outage: the machine's clock "
        "plus the offset learned from its live messages)"
    )
    case_nos: list[str]


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


class PresenceOut(BaseModel):
    hall: str
    business_day: dt.date
    window: int
    staff: str
    staff_name: str | None = Field(
        default=None, description="工作人员姓名, where the hall's setup names them"
    )
    start: dt.datetime
    end: dt.datetime
    opened_by: str = Field(description="LI | RS | activity (first ST/FN without a login)")
    closed_by: str = Field(description="LO | PS | moved | end_of_data")


def _minutes(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    return None if a is None or b is None else round((b - a).total_seconds() / 60, 2)


def _session_out(r: Any, names: dict[tuple[str, str], str]) -> SessionOut:
    return SessionOut(
        session_id=r.session_id,
        hall=r.hall_id,
        business_day=r.business_day,
        ticket=r.ticket,
        service=r.service,
        window=r.window,
        staff=r.staff,
        staff_name=halls.name_of(names, r.hall_id, r.staff),
        outcome=Outcome(r.outcome),
        queued_at=r.queued_at,
        called_at=r.called_at,
        started_at=r.started_at,
        ended_at=r.ended_at,
        next_call_at=r.next_call_at,
        next_start_at=r.next_start_at,
        wait_minutes=_minutes(r.queued_at, r.called_at),
        service_minutes=_minutes(r.started_at, r.ended_at),
        recalls=r.recalls,
        machine_times=dict(r.machine_times),
        time_sources=dict(r.time_sources or {}),
        case_nos=list(r.case_nos),
    )


@router.get(
    "/sessions",
    response_model=SessionPage,
    summary="Service sessions: issued → called → started → finished/no-show/transfer",
)
async def list_sessions(
    db: Engine,
    who: EvaluationReader,
    from_: FromDay = None,
    to: ToDay = None,
    hall: str | None = None,
    window: int | None = None,
    staff: str | None = None,
    ticket: str | None = None,
    outcome: Outcome | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> SessionPage:
    """In (business_day, session_id) order, keyset-paged. A department leader sees the
    sessions that produced one of the department's cases."""
    scope = scope_of(who, hall)
    first, last = period(from_, to)
    s = service_sessions
    query = select(s).where(
        s.c.business_day >= first, s.c.business_day <= last, scope.narrow(s.c.hall_id)
    )
    for column, value in (
        (s.c.window, window),
        (s.c.staff, staff),
        (s.c.ticket, ticket),
        (s.c.outcome, outcome.value if outcome else None),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(s.c.business_day, s.c.session_id)
    after: tuple[dt.date, str] | None = None
    if cursor is not None:
        day, sid = decode_cursor(cursor, 2)
        after = (dt.date.fromisoformat(day), str(sid))
    wanted: set[str] | None = None
    out: list[Any] = []
    async with db.connect() as conn:
        if scope.department is not None:
            wanted = {
                c.case_no
                for c in await conn.execute(
                    select(cases.c.case_no).where(cases.c.department == scope.department)
                )
            }
        while len(out) <= limit:
            page = query
            if after is not None:
                page = page.where(
                    or_(
                        s.c.business_day > after[0],
                        and_(s.c.business_day == after[0], s.c.session_id > after[1]),
                    )
                )
            rows = (await conn.execute(page.limit(limit + 1))).all()
            out += [r for r in rows if wanted is None or wanted.intersection(r.case_nos)]
            if len(rows) <= limit:
                break
            after = (rows[-1].business_day, rows[-1].session_id)
        names = await halls.staff_names(conn, sorted({r.hall_id for r in out}))
    more = len(out) > limit
    items = out[:limit]
    return SessionPage(
        items=[_session_out(r, names) for r in items],
        next_cursor=encode_cursor(items[-1].business_day, items[-1].session_id)
        if more and items
        else None,
    )


@router.get(
    "/presence",
    response_model=list[PresenceOut],
    summary="Staff presence (在岗) at windows, from LI/LO/PS/RS and service activity",
)
async def list_presence(
    db: Engine,
    who: EvaluationReader,
    from_: FromDay = None,
    to: ToDay = None,
    hall: str | None = None,
    window: int | None = None,
    staff: str | None = None,
) -> list[PresenceOut]:
    """A department leader sees the windows the hall's roster gives the department."""
    scope = scope_of(who, hall)
    first, last = period(from_, to)
    p = presence_periods
    query = (
        select(p)
        .where(p.c.business_day >= first, p.c.business_day <= last)
        .order_by(p.c.hall_id, p.c.business_day, p.c.window, p.c.start)
    )
    query = query.where(scope.narrow(p.c.hall_id))
    for column, value in ((p.c.window, window), (p.c.staff, staff)):
        if value is not None:
            query = query.where(column == value)
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
        names = await halls.staff_names(conn, sorted({r.hall_id for r in rows}))
        if scope.department is not None:
            stored = await halls.stored_setups(conn)
            roster: dict[str, dict[str, str]] = {}
            for name in {r.hall_id for r in rows}:
                dept_rows = await conn.execute(
                    select(cases.c.window, cases.c.department).where(cases.c.hall_id == name)
                )
                roster[name] = halls.with_defaults(
                    name, stored.get(name), [(c.window, c.department) for c in dept_rows]
                ).windows
            rows = [
                r for r in rows if roster.get(r.hall_id, {}).get(str(r.window)) == scope.department
            ]
    return [
        PresenceOut(
            hall=r.hall_id,
            business_day=r.business_day,
            window=r.window,
            staff=r.staff,
            staff_name=halls.name_of(names, r.hall_id, r.staff),
            start=r.start,
            end=r.end,
            opened_by=r.opened_by,
            closed_by=r.closed_by,
        )
        for r in rows
    ]
