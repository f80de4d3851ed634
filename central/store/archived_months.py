"""How far raw events have been archived and dropped (``central.records.event_archive``), kept
in the database so that every aggregator knows: a hall-day whose events began before that
moment cannot be recomputed from what is left, so its results and rollups stay as they were."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from central.store.partitions import next_month
from central.store.schema_correlation import correlation_state

NAME = "events_archived"  # value: {"kept_from": first UTC moment whose events are kept}


async def events_kept_from(conn: AsyncConnection) -> dt.datetime | None:
    """The first moment (UTC) whose raw events are still kept; None: nothing archived."""
    row = (
        await conn.execute(
            select(correlation_state.c.value).where(correlation_state.c.name == NAME)
        )
    ).first()
    return None if row is None else dt.datetime.fromisoformat(row.value["kept_from"])


async def record(conn: AsyncConnection, month: dt.date) -> None:
    """The UTC month ``month`` was archived and dropped (in the drop's transaction)."""
    kept_from = dt.datetime.combine(next_month(month), dt.time(), dt.UTC)
    before = await events_kept_from(conn)
    doc = {"kept_from": kept_from.isoformat()}
    if before is None:
        await conn.execute(insert(correlation_state).values(name=NAME, value=doc))
    elif kept_from > before:
        await conn.execute(
            update(correlation_state).where(correlation_state.c.name == NAME).values(value=doc)
        )
