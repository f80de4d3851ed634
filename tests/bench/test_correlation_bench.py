"""Correlation job figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_correlation_bench.py -s``). Figures are printed; nothing
is timed against a limit.

- HALLS generated hall-days (12 windows each, ~700 sessions, ~650 presses, ~6,000 events),
  ingested the real way, then the first run (every hall-day new);
- the re-run over unchanged data (the scan finds nothing);
- a live increment: one hall receives its next 60 events and is recomputed (what every
  30-second run does for each open hall);
- the longest the event loop was held during the first and the live run (the aggregator's
  ingest loop shares it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
from pathlib import Path

import pytest

from central.correlation.config import CorrelationConfig
from central.correlation.job import run_once
from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.central.correlation.conftest import case_record, deliver, store_cases
from tests.central.correlation.hallday import RAPID_S, generate
from tests.support.databases import create_pg_database, drop_pg_database

pytestmark = pytest.mark.bench

HALLS = 10
CFG = CorrelationConfig(rapid_repeat_s=RAPID_S)


async def _monitor(stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        worst.append(time.perf_counter() - t - 0.01)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_correlation_job_figures(kind: str, tmp_path: Path) -> None:
    name = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
    else:
        name, url = await asyncio.to_thread(create_pg_database)
    engine = make_engine(url)
    try:
        await upgrade(engine)
        days = [
            generate(seed=100 + i, windows=12, hall=f"H{i}", gateway=f"gw{i}") for i in range(HALLS)
        ]
        gc.freeze()  # the generated days are the harness's: keep their GC passes out of it
        last_press = max(i for i, e in enumerate(days[0].events) if e.kind == "evaluator.key")
        held_back = days[0].events[last_press - 59 : last_press + 1]
        t = time.perf_counter()
        for day in days:
            await register(engine, day.hall, day.gateway)
            await store_cases(engine, [case_record(c, hall=day.hall) for c in day.cases])
            await deliver(engine, day, [e for e in day.events if e not in held_back])
        ingest_s = time.perf_counter() - t
        events = sum(len(d.events) for d in days)
        presses = sum(len(d.truth) for d in days)

        stop, worst = asyncio.Event(), [0.0]
        monitor = asyncio.create_task(_monitor(stop, worst))
        t = time.perf_counter()
        first = await run_once(engine, cfg=CFG)
        first_s = time.perf_counter() - t
        stop.set()
        await monitor

        t = time.perf_counter()
        idle = await run_once(engine, cfg=CFG)
        idle_s = time.perf_counter() - t
        assert idle.new_results == idle.reissued == 0

        await deliver(engine, days[0], held_back)
        stop, live_worst = asyncio.Event(), [0.0]
        monitor = asyncio.create_task(_monitor(stop, live_worst))
        t = time.perf_counter()
        live = await run_once(engine, cfg=CFG)
        live_s = time.perf_counter() - t
        stop.set()
        await monitor
        assert live.days == [(days[0].hall, dt.date(2026, 11, 20))]

        print(
            f"\n[{kind}] {HALLS} hall-days, {events} events, {presses} presses "
            f"(ingest + cases {ingest_s:.1f} s)"
        )
        print(
            f"[{kind}] first run: {first_s:.2f} s = {first_s / HALLS * 1000:.0f} ms per "
            f"hall-day, {first.new_results / first_s:.0f} results/s; longest event-loop "
            f"hold {max(worst) * 1000:.0f} ms"
        )
        print(f"[{kind}] re-run, nothing new: {idle_s * 1000:.0f} ms")
        print(
            f"[{kind}] one hall's next 60 events: {live_s * 1000:.0f} ms "
            f"({live.new_results} new, {live.reissued} re-issued); longest event-loop "
            f"hold {max(live_worst) * 1000:.0f} ms"
        )
    finally:
        gc.unfreeze()
        await engine.dispose()
        if name is not None:
            await asyncio.to_thread(drop_pg_database, name)
