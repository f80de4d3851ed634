"""Outbox delivery figures on both databases (``./run.sh bench``, or
``pytest -m bench tests/bench/test_outbox_bench.py -s``). Figures are printed and written to
test-output/bench-outbox.json; nothing is timed against a limit.

``HALLWATCH_BENCH_MESSAGES`` (2,000) platform records are enqueued (one transaction per 500,
as the feed does), then delivered to a local fake platform that answers at once: by one
delivery worker, then (the same records enqueued again under new keys) by two workers at once,
as two aggregator processes would run them. Each run checks that the platform saw every key;
repeats (a key sent again after a lost answer) are printed.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox import store
from central.outbox.config import HttpTarget, OutboxConfig
from central.outbox.store import Channel
from central.outbox.worker import Deliverer
from central.store.db import make_engine
from central.store.migrate import upgrade
from tests.bench.figures import OUTPUT, record_ms
from tests.central.outbox.fakes import FakeReceiver, serve
from tests.support.databases import create_pg_database, drop_pg_database

pytestmark = [pytest.mark.bench, pytest.mark.asyncio]

MESSAGES = int(os.environ.get("HALLWATCH_BENCH_MESSAGES", "2000"))
RESULTS = OUTPUT / "bench-outbox.json"


async def _enqueue(engine: AsyncEngine, run: str) -> float:
    started = time.perf_counter()
    for first in range(0, MESSAGES, 500):
        async with engine.begin() as conn:
            for i in range(first, min(first + 500, MESSAGES)):
                await store.enqueue(
                    conn,
                    channel=Channel.PLATFORM_HTTP,
                    key=f"haocha:{run}:{i}:1",
                    kind="haocha.record",
                    recipient="platform",
                    payload={"record_id": f"{run}-{i}", "level": 5, "tags": []},
                )
    return time.perf_counter() - started


async def _drain(workers: list[Deliverer], fake: FakeReceiver, expected: int) -> float:
    started = time.perf_counter()

    async def work(d: Deliverer) -> None:
        while len(fake.seen) < expected:
            if not await d.run_once():
                await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(*(work(d) for d in workers)), timeout=600)
    return time.perf_counter() - started


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_outbox_delivery_figures(kind: str, tmp_path: Path) -> None:
    name = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    else:
        name, url = await asyncio.to_thread(create_pg_database)
    engine = make_engine(url)
    fake = FakeReceiver()
    try:
        await upgrade(engine)
        with serve(fake) as platform:
            config = OutboxConfig(
                platform_http=HttpTarget(url=platform, timeout_s=10), batch=100, lease_s=60
            )
            for run, count in (("one", 1), ("two", 2)):
                enqueue_s = await _enqueue(engine, run)
                workers = [Deliverer(engine, config, worker=f"{run}{n}") for n in range(count)]
                expected = len(fake.seen) + MESSAGES
                drain_s = await _drain(workers, fake, expected)
                for d in workers:
                    await d.adapters[Channel.PLATFORM_HTTP].close()
                label = f"{kind}, {MESSAGES} platform records"
                record_ms(RESULTS, f"{label}: enqueue", enqueue_s)
                record_ms(RESULTS, f"{label}: delivered by {count} worker(s)", drain_s)
                print(f"BENCH {label}, {count} worker(s): {MESSAGES / drain_s:,.0f} records/s")
        assert len(fake.accepted) == 2 * MESSAGES
        print(f"BENCH {kind}: repeats seen by the platform (same key again): {fake.repeats}")
    finally:
        await engine.dispose()
        if name is not None:
            await asyncio.to_thread(drop_pg_database, name)
