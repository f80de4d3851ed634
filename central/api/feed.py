"""The 好差评 feed's status: records sent upward and where each stands in the outbox; and the
outbox's messages by channel and status (every kind: feed, warnings, applicant SMS)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from central.api.deps import Engine, FeedReader, HallQuery, OutboxReader, hall_in_reach
from central.haocha.status import FeedStatus, feed_status
from central.outbox.store import Status, by_channel
from central.security.access import Area

router = APIRouter(prefix="/api/v1", tags=["feed"])


class OutboxStatus(BaseModel):
    channels: dict[str, dict[str, int]] = Field(
        description="channel (platform_http, platform_file, sms, email, webhook) → status → count"
    )


@router.get("/feed/status", response_model=FeedStatus)
async def get_feed_status(
    db: Engine,
    who: FeedReader,
    hall: HallQuery = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FeedStatus:
    """Counts by status (pending, sending, delivered, failed, held) and the newest records;
    a hall manager sees their halls' records."""
    halls = hall_in_reach(who, Area.FEED, hall)
    async with db.connect() as conn:
        return await feed_status(conn, halls, status, limit)


@router.get("/outbox/status", response_model=OutboxStatus)
async def get_outbox_status(db: Engine, who: OutboxReader) -> OutboxStatus:
    """Every channel's messages by status (supervisors: it counts every hall's messages)."""
    async with db.connect() as conn:
        return OutboxStatus(channels=await by_channel(conn))
