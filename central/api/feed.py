"""The 好差评 feed's status: records sent upward and where each stands in the outbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from central.api.deps import Engine, EvaluationReader, hall_in_reach
from central.haocha.status import FeedStatus, feed_status
from central.outbox.store import Status
from central.security.access import Area

router = APIRouter(prefix="/api/v1", tags=["feed"])


@router.get("/feed/status", response_model=FeedStatus)
async def get_feed_status(
    db: Engine,
    who: EvaluationReader,
    hall: str | None = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FeedStatus:
    """Counts by status (pending, sending, delivered, failed, held) and the newest records;
    a hall manager sees their halls' records."""
    halls = hall_in_reach(who, Area.EVALUATIONS, hall)
    async with db.connect() as conn:
        return await feed_status(conn, halls, status, limit)
