"""Loads the detector's ``Facts`` for one hall and period from the store: the current
correlation result of every evaluation, the service sessions, the invitations the gateway
journaled (and how they ended), and the cases they touch with the ladder's verdict.

What the store does not say is derived here, and the rules are stated where they are applied:
an invitation belongs to the finished service at its window with its ticket; it ended PRESSED
when an evaluation answered that service, CLOSED when the gateway closed it for the next
service, CANCELLED when a new invitation superseded it, TIMED_OUT otherwise. A case counts as
on site (当场办结) when completed on its day of acceptance; complaints are not fed to central
yet, so they stay unknown (None).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.correlation.store import chunks
from central.gaming.context import baseline_from
from central.gaming.model import (
    Baseline,
    CaseFact,
    Facts,
    InvitationEnd,
    Period,
    PressFact,
    SessionFact,
)
from central.rules.workdays import business_date, day_start
from central.store.schema import cases, events
from central.store.schema_cases import case_ladder
from central.store.schema_correlation import (
    correlation_event_days,
    correlation_heads,
    correlation_results,
    service_sessions,
)

INVITED_BASES = frozenset(
    {"invitation", "invitation_ticket", "invite_record", "invite_record_ticket"}
)
INVITE_KIND, CLOSED_KIND = "evaluator.invite", "evaluator.invite_closed"
INVITE_SLACK = dt.timedelta(seconds=60)  # an invitation follows its FN within this (clocks)
MIN_BASELINE_PRESSES = 50  # fewer in the weeks before: the detector uses the period itself


@dataclass(frozen=True, slots=True)
class _Invite:
    window: int
    ticket: str | None
    at: dt.datetime
    session: int  # the evaluator's session number (a closing names it)


async def _presses(conn: AsyncConnection, hall: str, period: Period) -> list[Any]:
    r, h = correlation_results, correlation_heads
    query = (
        select(r)
        .join(
            h,
            and_(h.c.gateway_id == r.c.gateway_id, h.c.seq == r.c.seq, h.c.version == r.c.version),
        )
        .where(
            h.c.hall_id == hall,
            h.c.business_day >= period.start,
            h.c.business_day <= period.end,
        )
        .order_by(r.c.evaluated_at, r.c.gateway_id, r.c.seq)
    )
    return list((await conn.execute(query)).all())


async def _sessions(conn: AsyncConnection, hall: str, period: Period) -> list[Any]:
    s = service_sessions.c
    query = select(service_sessions).where(
        s.hall_id == hall, s.business_day >= period.start, s.business_day <= period.end
    )
    return list((await conn.execute(query.order_by(s.called_at, s.session_id))).all())


async def _invites(conn: AsyncConnection, hall: str, period: Period) -> list[_Invite]:
    d = correlation_event_days.c
    query = (
        select(events.c.body, d.at)
        .join(
            correlation_event_days,
            and_(d.gateway_id == events.c.gateway_id, d.seq == events.c.seq),
        )
        .where(
            d.hall_id == hall,
            d.kind == INVITE_KIND,
            d.business_day >= period.start,
            d.business_day <= period.end,
        )
    )
    found = []
    for body, at in await conn.execute(query):
        invitation = (body or {}).get("invitation") or {}
        found.append(_Invite(body["window"], invitation.get("ticket"), at, invitation["session"]))
    return found


async def _closings(conn: AsyncConnection, hall: str, period: Period) -> dict[tuple[int, int], str]:
    """(window, evaluator session) → why the gateway closed that invitation."""
    query = select(events.c.body).where(
        events.c.hall_id == hall,
        events.c.kind == CLOSED_KIND,
        events.c.utc >= day_start(period.start) - INVITE_SLACK,
        events.c.utc < day_start(period.end + dt.timedelta(days=1)) + INVITE_SLACK,
    )
    out: dict[tuple[int, int], str] = {}
    for (body,) in await conn.execute(query):
        out[(body["window"], body["session"])] = body["reason"]
    return out


async def _cases(conn: AsyncConnection, case_nos: Iterable[str]) -> list[Any]:
    rows: list[Any] = []
    for chunk in chunks(sorted(set(case_nos))):
        query = (
            select(cases, case_ladder.c.overdue)
            .outerjoin(case_ladder, case_ladder.c.case_no == cases.c.case_no)
            .where(cases.c.case_no.in_(list(chunk)))
        )
        rows.extend((await conn.execute(query)).all())
    return rows


def _invitation_of(session: Any, invites: list[_Invite]) -> _Invite | None:
    if session.ended_at is None or session.window is None:
        return None
    until = session.next_start_at or session.ended_at + dt.timedelta(hours=1)
    for invite in invites:
        if (
            invite.window == session.window
            and (invite.ticket is None or invite.ticket == session.ticket)
            and session.ended_at - INVITE_SLACK <= invite.at < until
        ):
            return invite
    return None


def _ending(invite: _Invite, pressed: bool, closings: dict[tuple[int, int], str]) -> InvitationEnd:
    if pressed:
        return InvitationEnd.PRESSED
    reason = closings.get((invite.window, invite.session))
    if reason == "next_service_started":
        return InvitationEnd.CLOSED
    if reason == "superseded":
        return InvitationEnd.CANCELLED
    return InvitationEnd.TIMED_OUT


def _case_fact(row: Any) -> CaseFact:
    completed = row.completed_at
    return CaseFact(
        case_no=row.case_no,
        hall_id=row.hall_id,
        item_code=row.item_code,
        department=row.department,
        window=row.window,
        staff=row.staff,
        applicant_digest=row.applicant_digest,
        accepted_at=row.accepted_at,
        completed_at=completed,
        status=row.status,
        legal_days=row.legal_days,
        promised_days=row.promised_days,
        overdue=bool(row.overdue),
        on_site=None
        if completed is None
        else business_date(completed) == business_date(row.accepted_at),
        complaint=None,
        abandoned=row.status == "withdrawn",
    )


async def load(conn: AsyncConnection, hall: str, period: Period) -> Facts:
    """Everything the detector may look at for ``hall`` over ``period`` (no baseline: the
    detector then compares each window and staff member with the rest of the hall)."""
    press_rows = await _presses(conn, hall, period)
    session_rows = await _sessions(conn, hall, period)
    invites = sorted(await _invites(conn, hall, period), key=lambda i: i.at)
    closings = await _closings(conn, hall, period)
    case_nos = [n for r in (*press_rows, *session_rows) for n in (r.case_nos or [])]
    case_rows = {r.case_no: r for r in await _cases(conn, case_nos)}
    answered = {r.session_id for r in press_rows if r.session_id and r.counted}
    by_window: dict[int | None, list[_Invite]] = defaultdict(list)
    for each in invites:
        by_window[each.window].append(each)
    sessions: list[SessionFact] = []
    invited_at: dict[str, dt.datetime] = {}
    for s in session_rows:
        invite = _invitation_of(s, by_window.get(s.window, []))
        if invite is not None:
            invited_at[s.session_id] = invite.at
        tied = [case_rows[n] for n in (s.case_nos or []) if n in case_rows]
        sessions.append(
            SessionFact(
                session_id=s.session_id,
                hall_id=s.hall_id,
                business_day=s.business_day,
                window=s.window,
                staff=s.staff,
                service=s.service,
                called_at=s.called_at,
                started_at=s.started_at,
                ended_at=s.ended_at,
                next_call_at=s.next_call_at,
                overdue=any(bool(c.overdue) for c in tied),
                invited=invite is not None,
                invited_at=None if invite is None else invite.at,
                invitation_end=None
                if invite is None
                else _ending(invite, s.session_id in answered, closings),
                case_nos=tuple(s.case_nos or ()),
            )
        )
    presses = [_press_fact(r, invited_at, case_rows) for r in press_rows]
    return Facts(
        hall_id=hall,
        period=period,
        presses=tuple(presses),
        sessions=tuple(sessions),
        cases=tuple(_case_fact(r) for r in case_rows.values()),
    )


def _press_fact(r: Any, invited_at: dict[str, dt.datetime], case_rows: dict[str, Any]) -> PressFact:
    invited = r.basis in INVITED_BASES
    since = invited_at.get(r.session_id or "") if invited else None
    digests = (case_rows[n].applicant_digest for n in (r.case_nos or []) if n in case_rows)
    return PressFact(
        gateway_id=r.gateway_id,
        seq=r.seq,
        hall_id=r.hall_id,
        business_day=r.business_day,
        window=r.window,
        staff=r.staff,
        key=r.key,
        at=r.evaluated_at,
        session_id=r.session_id,
        invited=invited,
        seconds_after_invitation=None
        if since is None
        else max(0.0, (r.evaluated_at - since).total_seconds()),
        flags=tuple(str(f) for f in (r.flags or ())),
        counted=bool(r.counted),
        case_nos=tuple(r.case_nos or ()),
        applicant_digests=tuple(sorted({d for d in digests if d})),
        citizen=r.citizen,
    )


async def baseline(
    conn: AsyncConnection, hall: str, period: Period, weeks: int, grace_s: float
) -> Baseline | None:
    """The hall's baseline from the ``weeks`` before ``period``; None when they hold too few
    presses to say what is normal (a new hall)."""
    if weeks <= 0:
        return None
    before = Period(
        period.start - dt.timedelta(weeks=weeks), period.start - dt.timedelta(days=1), "week"
    )
    history = await load(conn, hall, before)
    if len(history.presses) < MIN_BASELINE_PRESSES:
        return None
    return baseline_from([history], grace_s)
