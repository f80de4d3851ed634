"""Warnings on the time-limit ladder: each yellow or red light and each card a case receives
becomes a message to the responsible staff member (受理人) and, from the red light on, to the
department's leader, on every channel their contact allows (SMS, e-mail), plus one to the
webhook if configured.

A scan reads ladder steps recorded since its last pass (``case_steps`` is append-only); the
idempotency key names the case, stage, moment and recipient, so a repeated scan adds nothing.
Only people named in ``outbox.contacts`` are written to: nobody is guessed."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox.config import OutboxConfig
from central.outbox.store import Audience, Channel, enqueue
from central.rules.timelimit import LadderStage
from central.store.schema import cases
from central.store.schema_cases import case_ladder, case_steps
from hallkit.clock import utc_now

log = logging.getLogger(__name__)

STAFF_STAGES = frozenset(
    {
        LadderStage.YELLOW_LIGHT,
        LadderStage.RED_LIGHT,
        LadderStage.YELLOW_CARD,
        LadderStage.RED_CARD,
    }
)
LEADER_STAGES = STAFF_STAGES - {LadderStage.YELLOW_LIGHT}
SINCE_SLACK = dt.timedelta(minutes=5)
EVERY_S = 60.0
# a process starting looks back this far: steps missed while it was down still go out, but a
# first start never warns about a backlog of old cases
LOOK_BACK = dt.timedelta(days=1)


def recipients(stage: LadderStage, staff: str | None, department: str) -> list[str]:
    """Who hears of ``stage`` (references, pure)."""
    found = []
    if stage in STAFF_STAGES and staff:
        found.append(f"staff:{staff}")
    if stage in LEADER_STAGES:
        found.append(f"leader:{department}")
    return found


def routes(config: OutboxConfig, people: list[str]) -> list[tuple[Channel, str]]:
    """(channel, recipient) pairs the configuration can deliver."""
    found: list[tuple[Channel, str]] = []
    for ref in people:
        contact = config.contacts.get(ref)
        if contact is None:
            continue
        if contact.phone and config.sms is not None:
            found.append((Channel.SMS, ref))
        if contact.email and config.email is not None:
            found.append((Channel.EMAIL, ref))
    if people and config.webhook is not None:
        found.append((Channel.WEBHOOK, "webhook"))
    return found


def params(step: Any) -> dict[str, Any]:
    return {
        "case_no": step.case_no,
        "item_name": step.item_name,
        "department": step.department,
        "deadline": step.deadline.isoformat() if step.deadline else "—",
        "days_over": step.days_over,
        "stage": step.stage,
    }


async def scan(engine: AsyncEngine, config: OutboxConfig, since: dt.datetime) -> int:
    """Enqueue the warnings of steps recorded since ``since``; the messages offered (those
    enqueued before count again, as one row each)."""
    s = case_steps.c
    query = (
        select(
            s.case_no,
            s.stage,
            s.at,
            s.days_over,
            cases.c.item_name,
            cases.c.department,
            cases.c.staff,
            case_ladder.c.deadline,
        )
        .join(cases, cases.c.case_no == s.case_no)
        .outerjoin(case_ladder, case_ladder.c.case_no == s.case_no)
        .where(s.stage.in_([x.value for x in STAFF_STAGES]))
        .where(s.recorded_at >= since)
        .order_by(s.recorded_at, s.case_no)
    )
    enqueued = 0
    async with engine.begin() as conn:
        for step in (await conn.execute(query)).all():
            people = recipients(LadderStage(step.stage), step.staff, step.department)
            for channel, ref in routes(config, people):
                key = f"ladder:{step.case_no}:{step.stage}:{step.at.isoformat()}:{ref}"
                await enqueue(
                    conn,
                    channel=channel,
                    key=key,
                    kind=f"ladder.{step.stage}",
                    recipient=ref,
                    payload={"event": f"ladder.{step.stage}", "params": params(step)},
                    audience=Audience.STAFF,
                )
                enqueued += 1
    return enqueued


Scan = Callable[[AsyncEngine, OutboxConfig, dt.datetime], Awaitable[int]]


async def scan_forever(
    scan_once: Scan, what: str, engine: AsyncEngine, config: OutboxConfig, every_s: float
) -> None:
    """Every ``every_s``, what changed since the last good scan (with some slack); a failed
    scan is tried again from the same point."""
    since = utc_now() - LOOK_BACK
    while True:
        started = utc_now()
        try:
            await scan_once(engine, config, since)
            since = started - SINCE_SLACK
        except Exception:
            log.exception("%s: scan failed; trying again", what)
        await asyncio.sleep(every_s)


async def run_forever(engine: AsyncEngine, config: OutboxConfig, every_s: float = EVERY_S) -> None:
    await scan_forever(scan, "ladder warnings", engine, config, every_s)


__all__ = ["recipients", "routes", "run_forever", "scan", "scan_forever"]
