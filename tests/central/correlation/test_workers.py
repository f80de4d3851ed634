"""Correlation shared by aggregator processes: hall-days claimed from the work queue.

Two real aggregators (``hallwatch-central serve --no-api``) on one PostgreSQL database with
generated hall-days; one is killed with ``kill -9`` while it holds hall-days; the survivor takes
them over when their lease ends, and every result equals that of a single-process run on the
same data. Each hall-day is computed once for its one burst of input. The queue's own rules
(one row per burst, the generation check, leases) are tested on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation import workqueue
from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.correlation.store import stored_content
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema_correlation import (
    correlation_days,
    correlation_dirty,
    correlation_heads,
    correlation_results,
    service_sessions,
)
from tests.central.correlation.conftest import case_record, deliver, store_cases
from tests.central.correlation.hallday import RAPID_S, HallDay, generate
from tests.support.broker import Broker
from tests.support.databases import (
    AT_HEAD,
    copy_pg_database,
    copy_pg_template,
    drop_pg_database,
    postgres_available,
)
from tests.support.procs import BIN, Proc, central_config, write_yaml

CFG = CorrelationConfig(rapid_repeat_s=RAPID_S)
# Two aggregators, one worker each, a hall-day ~1 s of work on a loaded machine: eight give the
# kill a hall-day in hand and the survivor several to take over
HALLS = 8
LEASE_S = 3.0
DAY = dt.date(2026, 11, 20)


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


async def _fill(engine: AsyncEngine, days: list[HallDay]) -> None:
    await upgrade(engine)
    for day in days:
        await register(engine, day.hall, day.gateway)
        await store_cases(engine, [case_record(c, hall=day.hall) for c in day.cases])
        await deliver(engine, day, day.events)


async def _results(engine: AsyncEngine) -> dict[tuple[str, int], dict[str, Any]]:
    r, h = correlation_results, correlation_heads
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(r).select_from(
                    h.join(
                        r,
                        and_(
                            r.c.gateway_id == h.c.gateway_id,
                            r.c.seq == h.c.seq,
                            r.c.version == h.c.version,
                        ),
                    )
                )
            )
        ).all()
    return {(row.gateway_id, row.seq): stored_content(row) for row in rows}


async def _sessions(engine: AsyncEngine) -> dict[str, tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(service_sessions))).all()
    return {r.session_id: tuple(r) for r in rows}


async def _runs(engine: AsyncEngine) -> dict[tuple[str, dt.date], int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(correlation_days))).all()
    return {(r.hall_id, r.business_day): r.runs for r in rows}


async def _claimed_by(engine: AsyncEngine, pid: int) -> list[tuple[str, dt.date]]:
    q = correlation_dirty
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(q.c.hall_id, q.c.business_day).where(
                    q.c.claimed_by.like(f"%:{pid}:%"), q.c.lease_until > func.now()
                )
            )
        ).all()
    return [(r.hall_id, r.business_day) for r in rows]


@pytest.fixture
async def pg_databases() -> AsyncIterator[list[str]]:
    """The names of the PostgreSQL databases a test makes, each dropped after it."""
    if not await asyncio.to_thread(postgres_available):
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (the test command starts it)")
    made: list[str] = []
    try:
        yield made
    finally:
        for name in made:
            await asyncio.to_thread(drop_pg_database, name)


@pytest.mark.postgres
async def test_two_aggregators_share_the_hall_days_and_survive_a_kill(
    pg_databases: list[str], broker: Broker, tmp_path: Path
) -> None:
    days = [
        generate(seed=300 + i, windows=6, hall=f"H{i}", gateway=f"gw{i}", day=DAY)
        for i in range(HALLS)
    ]
    name, single_url = await asyncio.to_thread(copy_pg_template, AT_HEAD)
    pg_databases.append(name)
    single = make_engine(single_url)
    try:
        await _fill(single, days)
    finally:
        await single.dispose()  # a database is copied only with no one connected
    # the aggregators' database holds the same hall-days: copied, not ingested a second time
    copy, shared_url = await asyncio.to_thread(copy_pg_database, name)
    pg_databases.append(copy)
    shared = make_engine(shared_url)
    procs: list[Proc] = []
    try:
        await run_once(single, cfg=CFG)  # the reference: one process, one runner

        # both aggregators read the same data directory: the same correlation.yaml
        data = {**CFG.model_dump(mode="json"), "lease_s": LEASE_S, "workers": 1}
        write_yaml(tmp_path / "central" / "correlation.yaml", data)
        for n in (1, 2):
            config = central_config(tmp_path, broker.port, shared_url, instance=f"agg{n}")
            argv = [str(BIN / "hallwatch-central"), "serve", "-c", str(config), "--no-api"]
            procs.append(Proc(argv, tmp_path / f"agg{n}.log").start())
        victim, survivor = procs

        held: list[tuple[str, dt.date]] = []

        async def victim_holds_work() -> bool:
            assert victim.process is not None and victim.alive, victim.log.read_text()
            held[:] = await _claimed_by(shared, victim.process.pid)
            return bool(held)

        await _until(victim_holds_work, "the first aggregator holding hall-days")
        victim.kill9()
        killed_at = time.monotonic()

        expected = {(d.hall, DAY) for d in days}

        async def all_computed() -> bool:
            async with shared.connect() as conn:
                left = await workqueue.pending(conn)
            return left == 0 and set(await _runs(shared)) == expected

        await _until(all_computed, "every hall-day computed by the survivor")
        taken_over_s = time.monotonic() - killed_at
        assert survivor.alive, survivor.log.read_text()

        assert await _results(shared) == await _results(single)
        assert await _sessions(shared) == await _sessions(single)
        # one burst of input: each hall-day computed (committed) once, the killed worker's
        # unfinished hall-days included
        assert await _runs(shared) == {k: 1 for k in expected}
        assert taken_over_s < 60, taken_over_s
    finally:
        for proc in procs:
            proc.stop()
        await shared.dispose()
        await single.dispose()


async def _queue(engine: AsyncEngine) -> dict[tuple[str, dt.date], Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(correlation_dirty))).all()
    return {(r.hall_id, r.business_day): r for r in rows}


async def test_a_burst_is_one_item_and_newer_input_survives_a_recompute(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    await upgrade(engine)
    try:
        async with engine.begin() as conn:
            for _ in range(5):  # a burst of arrivals for one hall-day
                await workqueue.mark(conn, [("H1", DAY), ("H1", DAY)])
        queued = await _queue(engine)
        assert list(queued) == [("H1", DAY)] and queued[("H1", DAY)].generation == 5

        async with engine.begin() as conn:
            (item,) = await workqueue.claim(conn, "w1", 4, LEASE_S)
            assert await workqueue.claim(conn, "w2", 4, LEASE_S) == []  # held by w1
        async with engine.begin() as conn:
            await workqueue.mark(conn, [("H1", DAY)])  # new input while w1 computes
        async with engine.begin() as conn:
            assert await workqueue.holds(conn, "w1", item)
            assert not await workqueue.finish(conn, "w1", item, complete=True)
        again = (await _queue(engine))[("H1", DAY)]
        assert (again.generation, again.claimed_by) == (6, None)  # queued again, free

        async with engine.begin() as conn:
            (item,) = await workqueue.claim(conn, "w2", 4, LEASE_S)
            assert item.generation == 6
            assert not await workqueue.holds(conn, "w1", item)  # w1's claim is gone
            assert await workqueue.finish(conn, "w2", item, complete=True)
        assert await _queue(engine) == {}
    finally:
        await engine.dispose()


async def test_a_lease_that_ran_out_is_taken_over(database_url: str) -> None:
    engine = make_engine(database_url)
    await upgrade(engine)
    try:
        async with engine.begin() as conn:
            await workqueue.mark(conn, [("H1", DAY), ("H2", DAY)])
            first = await workqueue.claim(conn, "dead", 4, 1.0)
        assert len(first) == 2

        async def free() -> bool:
            async with engine.begin() as conn:
                taken = await workqueue.claim(conn, "alive", 4, LEASE_S)
            return len(taken) == 2

        await _until(free, "the dead worker's lease ending", 30)
        async with engine.begin() as conn:
            assert not await workqueue.holds(conn, "dead", first[0])
            assert await workqueue.holds(conn, "alive", first[0])
    finally:
        await engine.dispose()
