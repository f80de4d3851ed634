"""Overdue complaints escalate like the other items: on the first overdue day the department's
leader is told (a complaint still in the triage queue: the supervisors), once the reply is
``escalate_after_days`` working days late the supervisors too (督办). Each level is recorded on
the complaint and in its history once; the outbox keys make a repeated scan send nothing new.
Only people named in ``outbox.contacts`` are written to."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from central.complaints.model import (
    OPEN_STATES,
    ComplaintsConfig,
    ComplaintState,
    Deadlines,
    escalation_level,
)
from central.complaints.store import record_event
from central.outbox.config import OutboxConfig
from central.outbox.store import Audience, enqueue
from central.outbox.warnings import routes
from central.rules.workdays import WorkCalendar, business_date
from central.store.schema_complaints import complaints
from hallkit.clock import utc_now

log = logging.getLogger(__name__)
TEMPLATES = {1: "complaint.overdue", 2: "complaint.escalated"}


def recipients(level: int, department: str | None, outbox: OutboxConfig) -> list[str]:
    """References to tell at ``level`` (pure)."""
    supervisors = sorted(ref for ref in outbox.contacts if ref.startswith("supervisor:"))
    if level >= 2 or department is None:
        return ([f"leader:{department}"] if department else []) + supervisors
    return [f"leader:{department}"]


async def scan(
    engine: AsyncEngine,
    calendar: WorkCalendar,
    config: ComplaintsConfig,
    outbox: OutboxConfig,
    now: dt.datetime,
) -> int:
    """Raise the level of every open complaint that has become later; the number raised."""
    c = complaints.c
    today = business_date(now)
    raised = 0
    async with engine.begin() as conn:
        query = select(complaints).where(c.state.in_([s.value for s in OPEN_STATES]))
        for row in (await conn.execute(query)).all():
            state = ComplaintState(row.state)
            level = escalation_level(
                calendar, state, Deadlines(row.ack_due, row.reply_due), today, config
            )
            if level <= row.escalation_level:
                continue
            await conn.execute(
                update(complaints)
                .where(c.complaint_no == row.complaint_no)
                .values(escalation_level=level, updated_at=now)
            )
            await record_event(
                conn, row.complaint_no, now, "escalate", state, None, f"督办 {level} 级"
            )
            event = TEMPLATES[min(level, 2)]
            people = recipients(level, row.department, outbox)
            for channel, ref in routes(outbox, people):
                await enqueue(
                    conn,
                    channel=channel,
                    key=f"complaint:{row.complaint_no}:level{level}:{ref}",
                    kind=event,
                    recipient=ref,
                    payload={
                        "event": event,
                        "params": {
                            "complaint_no": row.complaint_no,
                            "department": row.department or "未分办",
                            "deadline": row.reply_due.isoformat(),
                        },
                    },
                    audience=Audience.STAFF,
                )
            raised += 1
    return raised


async def run_forever(
    engine: AsyncEngine, calendar: WorkCalendar, config: ComplaintsConfig, outbox: OutboxConfig
) -> None:
    while True:
        try:
            await scan(engine, calendar, config, outbox, utc_now())
        except Exception:
            log.exception("complaint escalation: scan failed; trying again")
        await asyncio.sleep(config.escalation_every_s)
