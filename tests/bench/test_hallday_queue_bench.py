"""Hall-days per second from the shared work queue on PostgreSQL (``./run.sh bench``, or
``pytest -m bench tests/bench/test_hallday_queue_bench.py -s``). Figures are printed; nothing is
timed against a limit; they are also written to test-output/bench-hallday-queue.json.

``HALLWATCH_BENCH_HALLDAYS`` (2,000) hall-days of a generated hall (2 windows, ~2,100 events, about
a province's mean hall-day of ~1,870 events): one is ingested the real way and scanned, then
copied in SQL to the other halls (events, cases, event days), and every hall-day is queued. The
same first computation of all of them is timed for each layout of workers — one process with
one worker, two processes with one worker each, one process with two worker tasks — from a
reset (the derived tables emptied and every hall-day queued again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.correlation import intake, workqueue
from central.correlation.config import CorrelationConfig
from central.correlation.job import RunReport, drain
from central.rules.workdays import WorkCalendar
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import cases, events, gateways
from central.store.schema_correlation import correlation_event_days
from tests.central.correlation.conftest import case_record, deliver, store_cases
from tests.central.correlation.hallday import RAPID_S, generate
from tests.support.databases import create_pg_database, drop_pg_database

pytestmark = pytest.mark.bench

HALLDAYS = int(os.environ.get("HALLWATCH_BENCH_HALLDAYS", "2000"))
DAY = dt.date(2026, 11, 20)
CFG = CorrelationConfig(rapid_repeat_s=RAPID_S)
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-hallday-queue.json"
DERIVED = (
    "service_sessions",
    "presence_periods",
    "correlation_results",
    "correlation_case_links",
    "correlation_heads",
    "correlation_reissues",
    "correlation_days",
    "followup_events",
    "followups",
)


def _copy_sql(table_name: str, columns: list[str], where: str) -> str:
    """Copy the template hall's rows of a table to halls 1..n-1 (``:n``)."""
    renamed = {
        "gateway_id": "'gw' || i",
        "hall_id": "'H' || i",
        "case_no": "case_no || '-' || i",
    }
    select_list = ", ".join(renamed.get(c, f'"{c}"') for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    return (
        f"INSERT INTO {table_name} ({names}) SELECT {select_list} "
        f"FROM {table_name}, generate_series(1, :n - 1) AS i WHERE {where}"
    )


async def _prepare(engine: AsyncEngine) -> None:
    await upgrade(engine)
    day = generate(seed=11, windows=2, hall="H0", gateway="gw0", day=DAY)
    await register(engine, day.hall, day.gateway)
    await store_cases(engine, [case_record(c, hall=day.hall) for c in day.cases])
    await deliver(engine, day, day.events)
    async with engine.begin() as conn:
        await intake.scan(conn, CFG)
        for table, where in (
            (gateways, "gateway_id = 'gw0'"),
            (events, "gateway_id = 'gw0'"),
            (cases, "hall_id = 'H0'"),
            (correlation_event_days, "gateway_id = 'gw0'"),
        ):
            sql = _copy_sql(table.name, [c.name for c in table.c], where)
            await conn.execute(text(sql), {"n": HALLDAYS})
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))


async def _reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(DERIVED)}"))
        await conn.execute(text("DELETE FROM correlation_dirty"))
        await workqueue.mark(conn, [(f"H{i}", DAY) for i in range(HALLDAYS)])


async def _drain(url: str, tasks: int) -> int:
    engine = make_engine(url)
    try:
        reports = [RunReport() for _ in range(tasks)]
        done = await asyncio.gather(
            *(
                drain(engine, f"bench:{os.getpid()}:{n}", CFG, WorkCalendar(), reports[n])
                for n in range(tasks)
            )
        )
        return sum(done)
    finally:
        await engine.dispose()


def _process(url: str, tasks: int) -> None:
    asyncio.run(_drain(url, tasks))


def _join_all(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for p in procs:
        p.join()


async def _timed(url: str, processes: int, tasks: int) -> float:
    start = time.perf_counter()
    if processes == 1:
        await _drain(url, tasks)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_process, args=(url, tasks)) for _ in range(processes)]
        for p in procs:
            p.start()
        await asyncio.to_thread(_join_all, procs)
        assert all(p.exitcode == 0 for p in procs)
    return time.perf_counter() - start


@pytest.mark.timeout(4 * 3600)  # 2,000 hall-days three times over: tens of minutes
async def test_hall_days_per_second_by_workers() -> None:
    name, url = await asyncio.to_thread(create_pg_database)
    engine = make_engine(url)
    try:
        t = time.perf_counter()
        await _prepare(engine)
        prepare_s = time.perf_counter() - t
        print(
            f"\n{HALLDAYS} hall-days prepared in {prepare_s:.0f} s; load {os.getloadavg()[0]:.1f}"
        )
        figures: dict[str, dict[str, float]] = {}
        for processes, tasks in ((1, 1), (2, 1), (1, 2)):
            await _reset(engine)
            load = os.getloadavg()[0]
            seconds = await _timed(url, processes, tasks)
            async with engine.connect() as conn:
                left = await workqueue.pending(conn)
                computed = (
                    await conn.execute(text("SELECT count(*), sum(runs) FROM correlation_days"))
                ).one()
            assert left == 0 and tuple(computed) == (HALLDAYS, HALLDAYS)
            print(
                f"{processes} process(es) x {tasks} worker(s): {HALLDAYS} hall-days in "
                f"{seconds:.1f} s = {HALLDAYS / seconds:.1f} hall-days/s "
                f"({1000 * seconds / HALLDAYS:.0f} ms each; load before {load:.1f})"
            )
            figures[f"{processes}x{tasks}"] = {
                "hall_days": HALLDAYS,
                "seconds": round(seconds, 1),
                "hall_days_per_s": round(HALLDAYS / seconds, 2),
                "load_before": round(load, 1),
            }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2))
    finally:
        await engine.dispose()
        await asyncio.to_thread(drop_pg_database, name)
