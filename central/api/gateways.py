"""GET /api/v1/gateways, /api/v1/bridges and /api/v1/quarantine: what the halls' gateways and
the tier bridges that carry them are doing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from central.api.deps import Engine, HealthCaller, QuarantineCaller, hall_in_reach
from central.security.access import Area, may
from central.spine import bridges
from central.store.schema import (
    gateway_alarms,
    gateways,
    lost_ranges,
    pending_ranges,
    quarantine,
)

router = APIRouter(prefix="/api/v1", tags=["gateways"])


class AlarmOut(BaseModel):
    """What ingest refused or noticed: seq_conflict (a seq again with other content),
    seq_jump, journal_epoch (a new or replaced journal), quarantine_dropped, …"""

    kind: str
    count: int
    first_at: datetime
    last_at: datetime
    detail: str


class GatewayOut(BaseModel):
    gateway: str
    hall: str
    online: bool
    revoked: bool
    committed_through: int
    journal_head: int | None
    backlog: int | None
    oldest_unacked_utc: datetime | None
    clock_synced: bool | None
    lost_events: int
    gap_pending: bool
    last_batch_at: datetime | None
    state_at: datetime | None
    health: dict[str, Any]
    tasks: dict[str, Any] = Field(
        description="the gateway's supervised tasks: state (running | restarting | failed | "
        "stopped), restarts, last_error, error_at"
    )
    epoch: str | None
    alarms: list[AlarmOut]


@router.get("/gateways", response_model=list[GatewayOut], summary="Gateways and their uplink")
async def list_gateways(db: Engine, who: HealthCaller, hall: str | None = None) -> list[GatewayOut]:
    reachable = hall_in_reach(who, Area.HEALTH, hall)
    lost = (
        select(
            lost_ranges.c.gateway_id,
            func.sum(lost_ranges.c.last_seq - lost_ranges.c.first_seq + 1).label("n"),
        )
        .group_by(lost_ranges.c.gateway_id)
        .subquery()
    )
    gaps = select(pending_ranges.c.gateway_id).distinct().subquery()
    query = (
        select(gateways, lost.c.n, gaps.c.gateway_id.label("gap"))
        .outerjoin(lost, lost.c.gateway_id == gateways.c.gateway_id)
        .outerjoin(gaps, gaps.c.gateway_id == gateways.c.gateway_id)
        .order_by(gateways.c.hall_id, gateways.c.gateway_id)
    )
    alarm_query = select(gateway_alarms).order_by(gateway_alarms.c.kind)
    if reachable is not None:
        query = query.where(gateways.c.hall_id.in_(sorted(reachable)))
        alarm_query = alarm_query.where(
            gateway_alarms.c.gateway_id.in_(
                select(gateways.c.gateway_id).where(gateways.c.hall_id.in_(sorted(reachable)))
            )
        )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
        alarms: dict[str, list[AlarmOut]] = {}
        for a in (await conn.execute(alarm_query)).all():
            alarms.setdefault(a.gateway_id, []).append(
                AlarmOut(
                    kind=a.kind,
                    count=a.count,
                    first_at=a.first_at,
                    last_at=a.last_at,
                    detail=a.detail,
                )
            )
    out = []
    for row in rows:
        journal = (row.state or {}).get("journal") or {}
        head = journal.get("head_seq")
        out.append(
            GatewayOut(
                gateway=row.gateway_id,
                hall=row.hall_id,
                online=row.online,
                revoked=row.revoked_at is not None,
                committed_through=row.committed_through,
                journal_head=head,
                backlog=max(0, head - row.committed_through) if head is not None else None,
                oldest_unacked_utc=journal.get("oldest_unacked_utc"),
                clock_synced=(row.state or {}).get("synced"),
                lost_events=int(row.n or 0),
                gap_pending=row.gap is not None,
                last_batch_at=row.last_batch_at,
                state_at=row.state_at,
                health=(row.state or {}).get("health") or {},
                tasks=(row.state or {}).get("tasks") or {},
                epoch=row.epoch,
                alarms=alarms.get(row.gateway_id, []),
            )
        )
    return out


class BridgeOut(BaseModel):
    bridge: str
    up: bool
    label: str = Field(description="上联 正常 | 上联 中断")
    since: datetime = Field(description="when central first heard the present state")
    heard_at: datetime = Field(description="the latest notification")
    alarm: bool = Field(description="down for longer than bridges.down_grace_s")


@router.get(
    "/bridges",
    response_model=list[BridgeOut],
    summary="Tier bridges (县/市 links) to this broker: up or down, since when",
)
async def list_bridges(db: Engine, who: HealthCaller) -> list[BridgeOut]:
    # every hall's reach may see them: a link carries many halls and names none of them
    return [
        BridgeOut(
            bridge=link.bridge,
            up=link.up,
            label=link.label,
            since=link.changed_at,
            heard_at=link.heard_at,
            alarm=link.alarm,
        )
        for link in await bridges.links(db)
    ]


class QuarantineOut(BaseModel):
    id: int
    received_at: datetime
    topic: str
    gateway: str | None
    seq: int | None
    reason: str
    payload_size: int
    payload_head: str | None = Field(
        description="the payload's first 200 bytes; null for "
        "technicians (raw device text may name people)"
    )


@router.get(
    "/quarantine",
    response_model=list[QuarantineOut],
    summary="Messages refused by ingest, with the reason",
)
async def list_quarantine(
    db: Engine, who: QuarantineCaller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[QuarantineOut]:
    query = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    raw = may(who, Area.QUARANTINE_PAYLOAD)
    return [
        QuarantineOut(
            id=r.id,
            received_at=r.received_at,
            topic=r.topic,
            gateway=r.gateway_id,
            seq=r.seq,
            reason=r.reason,
            payload_size=r.payload_size,
            payload_head=bytes(r.payload[:200]).decode("utf-8", "replace") if raw else None,
        )
        for r in rows
    ]
