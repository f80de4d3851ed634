"""GET /api/v1/events: stored events, filtered, in (utc, gateway, seq) order, keyset-paged."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select, tuple_

from central.api.deps import Engine, EventsCaller, hall_in_reach
from central.reporting.history import arrived_as_history
from central.security.access import DEVICE_EVENT_KINDS, Area, may
from central.store.clockfix import corrected_utc
from central.store.schema import boot_clocks, events
from protocols.strict import stamp_plausible

router = APIRouter(prefix="/api/v1", tags=["events"])


class EventOut(BaseModel):
    gateway: str
    seq: int
    hall: str
    kind: str
    utc: datetime
    utc_corrected: datetime | None
    stamp_plausible: bool = Field(
        description="false: the gateway's clock was far off; rules use received_at"
    )
    synced: bool
    boot: str
    mono_ns: int
    body: dict[str, Any]
    received_at: datetime
    history: bool = Field(
        description="补传: received more than a minute after it happened (a gateway's backlog "
        "drained after an outage); live views show it as history, indicators count it as always"
    )


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


def _cursor(item: EventOut) -> str:
    raw = json.dumps([item.utc.isoformat(), item.gateway, item.seq]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _uncursor(text: str) -> tuple[datetime, str, int]:
    try:
        utc, gateway, seq = json.loads(base64.urlsafe_b64decode(text.encode()))
        return datetime.fromisoformat(utc), str(gateway), int(seq)
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, "invalid cursor") from exc


@router.get("/events", response_model=EventPage, summary="List stored events")
async def list_events(
    db: Engine,
    who: EventsCaller,
    hall: str | None = None,
    gateway: str | None = None,
    kind: Annotated[str | None, Query(description="exact kind, or a prefix ending in '.'")] = None,
    since: Annotated[datetime | None, Query(description="utc ≥ since (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="utc < until (ISO 8601)")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> EventPage:
    """A technician gets the device-health kinds only (central.security.access): the other
    kinds carry keys, tickets and staff numbers."""
    area = Area.EVENTS if may(who, Area.EVENTS) else Area.DEVICE_EVENTS
    reachable = hall_in_reach(who, area, hall)
    clock = boot_clocks
    query = select(events, clock.c.offset_us).select_from(
        events.outerjoin(
            clock, and_(clock.c.gateway_id == events.c.gateway_id, clock.c.boot == events.c.boot)
        )
    )
    if reachable is not None:
        query = query.where(events.c.hall_id.in_(sorted(reachable)))
    if gateway is not None:
        query = query.where(events.c.gateway_id == gateway)
    if area is Area.DEVICE_EVENTS:
        query = query.where(events.c.kind.in_(sorted(DEVICE_EVENT_KINDS)))
    if kind is not None:
        query = query.where(
            events.c.kind.startswith(kind) if kind.endswith(".") else events.c.kind == kind
        )
    for bound, op in ((since, "ge"), (until, "lt")):
        if bound is not None:
            bound = bound if bound.tzinfo else bound.replace(tzinfo=UTC)
            query = query.where(events.c.utc >= bound if op == "ge" else events.c.utc < bound)
    if cursor is not None:
        c_utc, c_gw, c_seq = _uncursor(cursor)
        query = query.where(
            or_(
                events.c.utc > c_utc,
                and_(
                    events.c.utc == c_utc,
                    tuple_(events.c.gateway_id, events.c.seq) > tuple_(c_gw, c_seq),
                ),
            )
        )
    query = query.order_by(events.c.utc, events.c.gateway_id, events.c.seq).limit(limit + 1)
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    items = [_event_out(row) for row in rows[:limit]]
    more = len(rows) > limit
    return EventPage(items=items, next_cursor=_cursor(items[-1]) if more and items else None)


def _event_out(row: Any) -> EventOut:
    corrected = corrected_utc(row.utc, row.synced, row.mono_ns, row.offset_us)
    plausible = corrected is None or stamp_plausible(corrected, row.received_at)
    return EventOut(
        gateway=row.gateway_id,
        seq=row.seq,
        hall=row.hall_id,
        kind=row.kind,
        utc=row.utc,
        utc_corrected=corrected if plausible else None,
        stamp_plausible=plausible,
        synced=row.synced,
        boot=row.boot,
        mono_ns=row.mono_ns,
        body=row.body,
        received_at=row.received_at,
        history=corrected is not None
        and plausible
        and arrived_as_history(corrected, row.received_at),
    )
