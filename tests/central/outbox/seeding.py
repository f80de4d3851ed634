"""Platform records enqueued for the delivery tests."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox import store
from central.outbox.store import Channel


def record_key(i: int) -> str:
    return f"haocha:gw1:{i}:1"


async def enqueue_records(engine: AsyncEngine, count: int, *, times: int = 1) -> None:
    """``count`` records for the upper platform, each enqueued ``times`` times."""
    async with engine.begin() as conn:
        for i in range(count):
            for _ in range(times):
                await store.enqueue(
                    conn,
                    channel=Channel.PLATFORM_HTTP,
                    key=record_key(i),
                    kind="haocha.record",
                    recipient="platform",
                    payload={"record_id": f"gw1-{i}", "level": 5},
                )
