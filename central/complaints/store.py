"""Complaints in the store: receive (tie, route, deadlines), move along, read within a role's
reach, and find one by its number and 查询码 for the public status page.

A reply enqueues its SMS in the same transaction (``central.outbox.store.enqueue``): a message
exists exactly when the reply was stored, keyed by the complaint so it goes out once. The SMS
goes only to a mobile number whose owner consented; everyone else reads the reply on the
public status page with the complaint number and code the form gave them."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.complaints.model import (
    NUMBER,
    Channel,
    ComplaintError,
    ComplaintIn,
    ComplaintsConfig,
    ComplaintState,
    deadlines,
    is_mobile,
    mask_phone,
    next_state,
)
from central.complaints.ties import tie
from central.outbox.store import Audience, enqueue, withdraw
from central.outbox.store import Channel as OutboxChannel
from central.rules.workdays import WorkCalendar, business_date
from central.security.access import Area, Reach, reach
from central.security.tokens import Principal
from central.store.schema_complaints import complaint_events, complaints

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read over the phone
CODE_LENGTH = 8
REPLY_SMS = "complaint.replied"


@dataclass(frozen=True, slots=True)
class Receipt:
    complaint_no: str
    code: str  # shown once, to the complainant; only its digest is kept
    reply_due: dt.date


def digest(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def reply_key(number: str) -> str:
    """The outbox key of the complaint's reply SMS: sent once."""
    return f"complaint:{number}:replied"


def new_number(received_on: dt.date) -> str:
    return f"TS{received_on:%Y%m%d}{secrets.randbelow(10**8):08d}"


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def record_event(
    conn: AsyncConnection,
    number: str,
    at: dt.datetime,
    action: str,
    state: ComplaintState,
    actor: str | None,
    note: str = "",
) -> None:
    e = complaint_events.c
    last = await conn.execute(select(func.max(e.seq)).where(e.complaint_no == number))
    seq = int(last.scalar_one() or 0) + 1
    await conn.execute(
        insert(complaint_events).values(
            complaint_no=number, seq=seq, at=at, action=action, state=state.value, actor=actor,
            note=note,
        )
    )  # fmt: skip


async def receive(
    conn: AsyncConnection,
    given: ComplaintIn,
    *,
    channel: Channel,
    calendar: WorkCalendar,
    config: ComplaintsConfig,
    now: dt.datetime,
    entered_by: str | None = None,
) -> Receipt:
    """Store a new complaint, tied and routed, in the caller's transaction."""
    received_on = business_date(now)
    ties = await tie(conn, given, received_on)
    due = deadlines(calendar, received_on, config)
    number, code = new_number(received_on), new_code()
    await conn.execute(
        insert(complaints).values(
            complaint_no=number,
            code_digest=digest(code),
            channel=channel.value,
            text=given.text,
            hall_id=ties.hall,
            window=ties.window,
            staff=ties.staff,
            staff_name_given=given.staff_name,
            case_ref=given.case_no,
            case_no=ties.case_no,
            happened_on=given.day,
            department=ties.department,
            complainant=given.name,
            phone=given.phone,
            phone_masked=mask_phone(given.phone),
            consent=given.consent,
            state=ComplaintState.PENDING.value,
            received_at=now,
            received_on=received_on,
            ack_due=due.ack_due,
            reply_due=due.reply_due,
            escalation_level=0,
            entered_by=entered_by,
            updated_at=now,
        )
    )
    routed = ties.department or "监察室分办 / supervisors' triage"
    await record_event(conn, number, now, "received", ComplaintState.PENDING, entered_by, routed)
    return Receipt(number, code, due.reply_due)


def scope_clause(who: Principal) -> ColumnElement[bool]:
    """The complaints ``who`` may see: supervisors all (the triage queue too), hall managers
    their hall's (and below), department leaders those routed to their department."""
    found = reach(who, Area.COMPLAINTS)
    if found is Reach.EVERY_HALL:
        return true()
    if found is Reach.OWN_HALL:
        return complaints.c.hall_id.in_(sorted(who.halls))
    if found is Reach.OWN_DEPARTMENT:
        return complaints.c.department == who.department
    return false()


async def find(conn: AsyncConnection, who: Principal, number: str) -> Any:
    query = select(complaints).where(complaints.c.complaint_no == number, scope_clause(who))
    return (await conn.execute(query)).first()


async def history(conn: AsyncConnection, number: str) -> list[Any]:
    e = complaint_events.c
    query = select(complaint_events).where(e.complaint_no == number).order_by(e.seq)
    return list((await conn.execute(query)).all())


async def transition(
    conn: AsyncConnection,
    number: str,
    action: str,
    *,
    at: dt.datetime,
    actor: str,
    note: str = "",
) -> Any:
    """Move the complaint along (``reply``: ``note`` is the reply; ``reject``: the reason).
    Raises ComplaintError for a step its state does not allow."""
    c = complaints.c
    row = (await conn.execute(select(complaints).where(c.complaint_no == number))).first()
    if row is None:
        raise ComplaintError(f"投诉不存在 / no complaint {number}")
    state = next_state(ComplaintState(row.state), action)
    values: dict[str, Any] = {"state": state.value, "updated_at": at}
    if action in ("reply", "reject") and not note.strip():
        raise ComplaintError("须填写答复或不予受理理由 / a reply or a reason is required")
    if action == "accept":
        values["accepted_at"] = at
    elif action == "reply":
        values.update(reply=note, replied_at=at, replied_on=business_date(at))
        if row.consent and is_mobile(row.phone):
            await enqueue(
                conn,
                channel=OutboxChannel.SMS,
                key=reply_key(number),
                kind=REPLY_SMS,
                recipient=f"complainant:{number}",
                payload={
                    "event": REPLY_SMS,
                    "phone": row.phone,
                    "params": {"complaint_no": number, "reply": note[:200]},
                },
                audience=Audience.CITIZEN,
            )
    elif action == "reject":
        values.update(reject_reason=note, closed_at=at, phone=None)
    elif action == "close":
        values.update(closed_at=at, phone=None)
        # the number goes from the outbox too: a reply SMS not sent by now is withdrawn (the
        # reply stays on the public status page)
        await withdraw(conn, OutboxChannel.SMS, reply_key(number))
    await conn.execute(update(complaints).where(c.complaint_no == number).values(**values))
    await record_event(conn, number, at, action, state, actor, note)
    return (await conn.execute(select(complaints).where(c.complaint_no == number))).first()


async def route(
    conn: AsyncConnection, number: str, department: str, *, at: dt.datetime, actor: str, note: str
) -> Any:
    """归口: hand an open complaint to ``department`` (from the triage queue, or re-routed)."""
    c = complaints.c
    row = (await conn.execute(select(complaints).where(c.complaint_no == number))).first()
    if row is None:
        raise ComplaintError(f"投诉不存在 / no complaint {number}")
    if not ComplaintState(row.state).open:
        raise ComplaintError("已答复或已办结的投诉不能再分办 / an answered complaint stays put")
    await conn.execute(
        update(complaints)
        .where(c.complaint_no == number)
        .values(department=department, updated_at=at)
    )
    await record_event(
        conn, number, at, "route", ComplaintState(row.state), actor, note or department
    )
    return (await conn.execute(select(complaints).where(c.complaint_no == number))).first()


async def public_lookup(conn: AsyncConnection, number: str, code: str) -> Any:
    """The complaint if ``code`` is its 查询码 (None otherwise, the same for a wrong number;
    a malformed one, a NUL PostgreSQL refuses among them, never reaches the store)."""
    number = number.strip()
    row = None
    if re.fullmatch(NUMBER, number):
        query = select(complaints).where(complaints.c.complaint_no == number)
        row = (await conn.execute(query)).first()
    wanted = row.code_digest if row is not None else "0" * 64
    matches = hmac.compare_digest(wanted, digest(code))  # the same work either way
    return row if row is not None and matches else None
