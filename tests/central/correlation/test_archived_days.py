"""A hall-day whose raw events were archived and dropped is not recomputed: its results and
rollups are what the dashboards keep (a late case change or a replayed event marks it dirty,
and recomputing it from the events left would wipe its evaluations and 满意率)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation import workqueue
from central.correlation.job import run_once
from central.spine.registry import register
from central.store import archived_months
from central.store.schema import events
from central.store.schema_correlation import correlation_dirty
from central.store.schema_rollups import indicator_rollups
from tests.central.correlation.journal import DAY, small_hall


async def _figures(engine: AsyncEngine) -> list[tuple[object, ...]]:
    r = indicator_rollups.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(indicator_rollups).where(r.hall_id == "H9", r.business_day == DAY)
        )
        return sorted(tuple(row) for row in rows)


async def test_an_archived_hall_day_keeps_its_figures_when_marked_again(
    engine: AsyncEngine,
) -> None:
    await register(engine, "H9", "gw9")
    await small_hall(engine)
    await run_once(engine)
    before = await _figures(engine)
    assert before, "the hall-day has rollups to keep"
    async with engine.begin() as conn:  # the month is archived: its events gone
        await conn.execute(delete(events))
        await archived_months.record(conn, dt.date(2026, 11, 1))
        await workqueue.mark(conn, [("H9", DAY)])
    await run_once(engine)
    assert await _figures(engine) == before
    async with engine.connect() as conn:  # taken off the queue, not left to retry forever
        left = (await conn.execute(select(func.count()).select_from(correlation_dirty))).scalar()
    assert left == 0
    async with engine.connect() as conn:
        assert await archived_months.events_kept_from(conn) == dt.datetime(
            2026, 12, 1, tzinfo=dt.UTC
        )
