"""A delivery worker process killed (SIGKILL) mid-delivery and a new worker started (in the
test's process: a second interpreter would only add its start-up time): nothing is lost, and
the platform keeps every record exactly once by its key (the killed process's in-flight
messages come back after their lease, with the same keys).

PostgreSQL only: the store several processes share in production, and the test is mostly the
killed interpreter's start-up; the claims and leases on SQLite are the delivery tests'."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox.store import Channel
from central.outbox.worker import Deliverer
from central.store.schema_outbox import outbox
from tests.central.outbox.fakes import FakeReceiver, serve
from tests.central.outbox.seeding import enqueue_records, record_key
from tests.central.outbox.worker_main import worker_config

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[3]
RECORDS = 30


def _worker(database_url: str, platform: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.central.outbox.worker_main", database_url, platform],
        cwd=ROOT,
        env=env,
    )


async def _delivered(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(outbox.c.status == "delivered")
        return int((await conn.execute(query)).scalar_one())


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_killed_mid_delivery_loses_nothing(engine: AsyncEngine, database_url: str) -> None:
    await enqueue_records(engine, RECORDS)
    fake = FakeReceiver(delay_s=0.2)  # each answer takes a while: sends are in flight
    with serve(fake) as url:
        first = _worker(database_url, url)
        try:
            arrived = await asyncio.to_thread(fake.wait_for, 12, 30.0)
            assert arrived, "the first worker never delivered"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert await _delivered(engine) < RECORDS  # killed before the end
        second = Deliverer(engine, worker_config(url), worker="second")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        try:
            while await _delivered(engine) < RECORDS and loop.time() < deadline:
                if not await second.run_once():
                    await asyncio.sleep(0.1)  # the killed worker's leases still run
        finally:
            await second.adapters[Channel.PLATFORM_HTTP].close()
    assert await _delivered(engine) == RECORDS
    assert set(fake.accepted) == {record_key(i) for i in range(RECORDS)}
