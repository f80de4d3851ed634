"""Where the feed's records stand: counts by outbox status and the records themselves (the API's
``GET /api/v1/feed/status`` and ``hallwatch-central feed status``)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from central.outbox.store import Status
from central.store.schema_outbox import haocha_feed, outbox


class FeedRecord(BaseModel):
    gateway: str
    seq: int
    version: int = Field(description="correlation version sent")
    hall: str
    op: str = Field(description="create | update | withdraw")
    level: int | None
    mapping_version: str
    channel: str
    status: str = Field(description="pending | sending | delivered | failed | held")
    attempts: int
    last_error: str | None
    enqueued_at: dt.datetime
    delivered_at: dt.datetime | None


class FeedStatus(BaseModel):
    counts: dict[str, int] = Field(description="records by status")
    records: list[FeedRecord] = Field(description="newest first")


async def feed_status(
    conn: AsyncConnection,
    halls: frozenset[str] | None = None,
    status: Status | None = None,
    limit: int = 100,
) -> FeedStatus:
    f, o = haocha_feed.c, outbox.c
    joined = haocha_feed.join(outbox, o.id == f.outbox_id)
    scope = [] if halls is None else [f.hall_id.in_(sorted(halls))]
    counts = {s.value: 0 for s in Status}
    for name, n in await conn.execute(
        select(o.status, func.count()).select_from(joined).where(*scope).group_by(o.status)
    ):
        counts[name] = int(n)
    query = (
        select(
            f.gateway_id,
            f.seq,
            f.version,
            f.hall_id,
            f.op,
            f.level,
            f.mapping_version,
            f.enqueued_at,
            o.channel,
            o.status,
            o.attempts,
            o.last_error,
            o.delivered_at,
        )
        .select_from(joined)
        .where(*scope)
        .order_by(f.enqueued_at.desc(), f.gateway_id, f.seq.desc(), f.version.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(o.status == status.value)
    records = [
        FeedRecord(
            gateway=r.gateway_id,
            seq=r.seq,
            version=r.version,
            hall=r.hall_id,
            op=r.op,
            level=r.level,
            mapping_version=r.mapping_version,
            channel=r.channel,
            status=r.status,
            attempts=r.attempts,
            last_error=r.last_error,
            enqueued_at=r.enqueued_at,
            delivered_at=r.delivered_at,
        )
        for r in await conn.execute(query)
    ]
    return FeedStatus(counts=counts, records=records)


__all__ = ["FeedRecord", "FeedStatus", "feed_status"]
