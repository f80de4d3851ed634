"""The gateway registry: which gateway speaks for which hall."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from central.store.db import insert_ignore
from central.store.schema import gateways
from hallkit.clock import utc_now
from protocols.topics import TopicError, check_id


async def register(engine: AsyncEngine, hall: str, gateway: str) -> None:
    """Idempotent; refuses to move a gateway to another hall (revoke and provision anew)."""
    try:
        check_id(hall, "hall")
        check_id(gateway, "gateway")
    except TopicError as exc:
        raise ValueError(str(exc)) from None
    if hall.startswith("_"):  # hw/v1/_feeds/… and any later service tree are not halls
        raise ValueError(f"hall ids starting with '_' are reserved: {hall!r}")
    async with engine.begin() as conn:
        await conn.execute(
            insert_ignore(conn, gateways),
            [
                {
                    "gateway_id": gateway,
                    "hall_id": hall,
                    "registered_at": utc_now(),
                    "committed_through": 0,
                    "online": False,
                }
            ],
        )
        row = (
            await conn.execute(select(gateways.c.hall_id).where(gateways.c.gateway_id == gateway))
        ).one()
        if row.hall_id != hall:
            raise ValueError(f"gateway {gateway} is already registered to hall {row.hall_id}")


async def revoke(engine: AsyncEngine, gateway: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(gateways)
            .where(gateways.c.gateway_id == gateway, gateways.c.revoked_at.is_(None))
            .values(revoked_at=utc_now())
        )
    return bool(result.rowcount)
