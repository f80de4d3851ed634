"""Dashboard API figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_dashboard_bench.py -s``). Figures are printed and recorded
in test-output/bench-dashboard.json; nothing is timed against a limit.

A city's worth of data: HALLS generated hall-days per day for DAYS days (12 windows, ~700
sessions, ~650 presses, ~6,000 events and their cases each), ingested and correlated the real
way, the ladder run. Then the time each dashboard call takes as a supervisor sees it (every
hall) through the ASGI app (no network): the first call, and the median of a few (the
overview answers repeats within a few seconds from its cache).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from pathlib import Path

import httpx
import pytest

from central.api.app import create_app
from central.cases import ladder
from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.rules.workdays import WorkCalendar
from central.security.tokens import Role, create_token
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.bench.figures import record_ms
from tests.central.correlation.conftest import case_record, deliver, store_cases
from tests.central.correlation.hallday import RAPID_S, generate
from tests.support.databases import create_pg_database, drop_pg_database

pytestmark = pytest.mark.bench

HALLS, DAYS = 6, 2
LAST_DAY = dt.date(2026, 11, 20)
RUNS = 3
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-dashboard.json"


def record(name: str, seconds: float) -> None:
    record_ms(RESULTS, name, seconds)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_dashboard_api_figures(kind: str, tmp_path: Path) -> None:
    name = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
    else:
        name, url = await asyncio.to_thread(create_pg_database)
    engine = make_engine(url)
    try:
        await upgrade(engine)
        presses = 0
        for d in range(DAYS):
            day = LAST_DAY - dt.timedelta(days=DAYS - 1 - d)
            for i in range(HALLS):
                hall_day = generate(
                    seed=200 + 10 * i + d, day=day, windows=12, hall=f"H{i}", gateway=f"gw{i}d{d}"
                )
                presses += len(hall_day.truth)
                await register(engine, hall_day.hall, hall_day.gateway)
                await store_cases(
                    engine,
                    [
                        case_record(c, hall=hall_day.hall, case_no=f"{c.case_no}-{i}-{d}")
                        for c in hall_day.cases
                    ],
                )
                await deliver(engine, hall_day, hall_day.events)
        await run_once(engine, cfg=CorrelationConfig(rapid_repeat_s=RAPID_S))
        await ladder.run_once(engine, LAST_DAY + dt.timedelta(days=1), WorkCalendar())
        print(f"\n{kind}: {HALLS} halls × {DAYS} days, {presses} key presses")
        headers = {"Authorization": f"Bearer {await create_token(engine, Role.SUPERVISOR)}"}
        app = create_app(engine)
        first = (LAST_DAY - dt.timedelta(days=29)).isoformat()
        calls = {
            "overview": f"/api/v1/overview?day={LAST_DAY}",
            "drilldown_30_days_all_halls": f"/api/v1/drilldown?first={first}&last={LAST_DAY}",
            "drilldown_30_days_one_hall": f"/api/v1/drilldown?first={first}&last={LAST_DAY}"
            "&hall=H0",
            "bulletin_month": "/api/v1/bulletin?month=2026-11",
            "bulletin_csv": "/api/v1/bulletin.csv?month=2026-11",
            "review_queue_day": f"/api/v1/review-queue?first={LAST_DAY}",
        }
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=300
        ) as client:
            for label, path in calls.items():
                times = []
                for _ in range(RUNS):
                    t = time.perf_counter()
                    reply = await client.get(path, headers=headers)
                    times.append(time.perf_counter() - t)
                    assert reply.status_code == 200, (path, reply.text[:300])
                # the first call computes; the overview serves repeats within 4 s from cache
                record(f"{kind}_{label}_first", times[0])
                record(f"{kind}_{label}_median", statistics.median(times))
    finally:
        await engine.dispose()
        if name is not None:
            await asyncio.to_thread(drop_pg_database, name)
