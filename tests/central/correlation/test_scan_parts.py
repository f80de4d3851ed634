"""A scan committed a part at a time indexes, repairs, places and queues exactly what the scan in
one transaction does, each hall-day queued once: three halls' days with queue outages and
changed cases, one hall a part, the second delivery scanned from the watermark the first left;
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from central.correlation import intake
from central.correlation.intake import ScanReport
from central.spine.registry import register
from central.store.schema_correlation import (
    correlation_case_seen,
    correlation_dirty,
    correlation_event_days,
    correlation_state,
)
from tests.central.correlation.conftest import case_record, deliver, store_cases
from tests.central.correlation.hallday import HallDay, generate
from tests.central.correlation.test_groundtruth import CFG
from tests.central.correlation.test_queue_outage import DRIFT, OUTAGES

Snapshot = tuple[list[tuple[Any, ...]], set[tuple[Any, ...]], tuple[int, ...]]


def _days() -> list[HallDay]:
    return [
        generate(
            seed=seed,
            windows=2,
            hall=f"H{n}",
            gateway=f"gw{n}",
            queue_outages=OUTAGES[n - 1 : n + 1],
            machine_drift=DRIFT,
        )
        for n, seed in ((1, 5), (2, 7), (3, 11))
    ]


async def _deliver(engine: AsyncEngine, days: list[HallDay], later: bool) -> None:
    """The day up to its second outage's end (``later`` False), or the rest."""
    for day in days:
        back = day.outages[-1][1]
        await deliver(engine, day, [e for e in day.events if (e.at >= back) == later])


async def _snapshot(engine: AsyncEngine, reports: list[ScanReport]) -> Snapshot:
    async with engine.connect() as conn:
        indexed = sorted(tuple(r) for r in await conn.execute(select(correlation_event_days)))
        # the generation too: each hall-day queued once by a scan, as one transaction does
        queued = {
            tuple(r)
            for r in await conn.execute(
                select(
                    correlation_dirty.c.hall_id,
                    correlation_dirty.c.business_day,
                    correlation_dirty.c.generation,
                )
            )
        }
    counts = tuple(
        n
        for r in reports
        for n in (r.new_events, r.repaired_events, r.resent_placed, r.changed_cases, len(r.dirty))
    )
    return indexed, queued, counts


STATE = (correlation_event_days, correlation_state, correlation_case_seen, correlation_dirty)


async def _save(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    async with engine.connect() as conn:
        return {t.name: [dict(r._mapping) for r in await conn.execute(select(t))] for t in STATE}


async def _restore(engine: AsyncEngine, saved: dict[str, list[dict[str, Any]]]) -> None:
    async with engine.begin() as conn:
        for table in STATE:
            await conn.execute(delete(table))
            if saved[table.name]:
                await conn.execute(insert(table), saved[table.name])


async def test_a_scan_in_parts_is_the_scan_in_one_transaction(engine: AsyncEngine) -> None:
    days = _days()
    for day in days[1:]:
        await register(engine, day.hall, day.gateway)
    await store_cases(engine, [case_record(c) for c in days[0].cases])
    transactions = 0

    @asynccontextmanager
    async def begin() -> AsyncIterator[AsyncConnection]:
        nonlocal transactions
        transactions += 1
        async with engine.begin() as conn:
            yield conn

    async def in_parts() -> ScanReport:
        return await intake.scan_in_parts(begin, CFG, part_events=1)

    async def at_once() -> ScanReport:
        async with engine.begin() as conn:
            return await intake.scan(conn, CFG)

    for later in (False, True):
        await _deliver(engine, days, later)
        if later:  # cases of another hall change with the second delivery
            await store_cases(
                engine,
                [case_record(c, hall="H2", case_no=f"{c.case_no}-2") for c in days[1].cases],
            )
        before = await _save(engine)
        transactions = 0
        parts = await in_parts()
        assert transactions == 1 + 3 + 1  # the reading, a part per hall, the watermarks
        by_parts = await _snapshot(engine, [parts])
        await _restore(engine, before)
        once = await at_once()
        assert by_parts == await _snapshot(engine, [once])
        assert once.new_events > 0 and once.resent_placed > 0 and once.changed_cases > 0
