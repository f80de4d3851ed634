"""差评 work-order notices: the assignee hears of an order handed to them, and an overdue stage
escalates to the department's leader (level 1) and then the supervisor (level 2 and above), on
every channel their contact allows, plus one to the webhook if configured.

A scan reads ``followup_events`` recorded since its last pass (append-only, like the ladder's
steps); the idempotency key names the event and the recipient, so a repeated scan adds
nothing. Recipients are references looked up in ``outbox.contacts``: the assignee as written
on the order (e.g. ``staff:000123``), ``leader:<department>`` and ``supervisor``; nobody else is
guessed. Messages and logs name the order, hall, window, stage and due day, never a person."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox.config import OutboxConfig
from central.outbox.store import Audience, enqueue
from central.outbox.warnings import routes, scan_forever
from central.rules.followup import Stage, escalation_target
from central.store.schema_correlation import followup_events, followups

EVERY_S = 60.0
KINDS = ("followup.assigned", "followup.escalated")
SUPERVISOR = "supervisor"


def recipients(
    kind: str, level: int | None, assignee: str | None, department: str | None
) -> list[str]:
    """Who hears of one event (references, pure)."""
    if kind == "followup.assigned":
        return [assignee] if assignee else []
    if kind == "followup.escalated" and level:
        if escalation_target(level) == "leader":
            return [f"leader:{department}"] if department else [SUPERVISOR]
        return [SUPERVISOR]
    return []


def event_name(kind: str, level: int | None) -> str:
    """The template of an event (``central.outbox.templates``)."""
    if kind == "followup.assigned":
        return "workorder.assigned"
    return f"workorder.escalated.{escalation_target(level or 1)}"


def params(row: Any) -> dict[str, Any]:
    """The order, hall, window, the stage concerned and its due day: no person."""
    stage = Stage(row.stage) if row.stage else Stage.VERIFY  # an assignment: during 核实
    due = getattr(row, f"{stage.value}_due", None)
    return {
        "item_id": row.item_id,
        "hall": row.hall_id,
        "window": row.window,
        "department": row.department or "—",
        "tag": row.tag or "—",
        "stage": stage.label,
        "due": due.isoformat() if due else "—",
        "level": row.level,
    }


async def scan(engine: AsyncEngine, config: OutboxConfig, since: dt.datetime) -> int:
    """Enqueue the notices of events recorded since ``since``; the messages offered (those
    enqueued before count again, as one row each)."""
    e, f = followup_events.c, followups.c
    query = (
        select(
            e.id,
            e.kind,
            e.level,
            e.stage,
            f.item_id,
            f.hall_id,
            f.window,
            f.department,
            f.tag,
            f.verify_due,
            f.rectify_due,
            f.call_back_due,
            f.assignee,
        )
        .join(followups, f.item_id == e.item_id)
        .where(e.kind.in_(KINDS), e.recorded_at >= since)
        .order_by(e.id)
    )
    enqueued = 0
    async with engine.begin() as conn:
        for row in (await conn.execute(query)).all():
            name = event_name(row.kind, row.level)
            people = recipients(row.kind, row.level, row.assignee, row.department)
            for channel, ref in routes(config, people):
                await enqueue(
                    conn,
                    channel=channel,
                    key=f"workorder:{row.id}:{ref}",
                    kind=name,
                    recipient=ref,
                    payload={"event": name, "params": params(row)},
                    audience=Audience.STAFF,
                )
                enqueued += 1
    return enqueued


async def run_forever(engine: AsyncEngine, config: OutboxConfig, every_s: float = EVERY_S) -> None:
    await scan_forever(scan, "work-order notices", engine, config, every_s)


__all__ = ["event_name", "recipients", "run_forever", "scan"]
