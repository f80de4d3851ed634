"""The outbox on real stores against a fake receiver that fails (500), times out after
accepting, and drops the connection after accepting: every message reaches it, each key is
kept exactly once, repeats carry the same key; quiet hours postpone and the rate limit holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.outbox import store
from central.outbox.config import Contact, HttpTarget, OutboxConfig, SmsTarget
from central.outbox.store import Audience, Channel
from central.outbox.worker import Deliverer
from central.store.schema_outbox import outbox
from tests.central.outbox.fakes import FakeReceiver, serve
from tests.central.outbox.seeding import enqueue_records, record_key

pytestmark = pytest.mark.asyncio


async def _rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        found = await conn.execute(select(outbox).order_by(outbox.c.id))
        return [dict(r._mapping) for r in found]


async def _drain(deliverer: Deliverer, engine: AsyncEngine, timeout_s: float = 30.0) -> None:
    """Run delivery rounds until nothing is pending or sending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        await deliverer.run_once()
        rows = await _rows(engine)
        if all(r["status"] not in ("pending", "sending") for r in rows):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not drained: {[(r['id'], r['status']) for r in rows]}")


async def test_delivery_through_faults_quiet_hours_and_rate_limits(engine: AsyncEngine) -> None:
    """One store for both parts: a database of each kind costs seconds to make."""
    await _each_record_reaches_the_platform_once_by_its_key(engine)
    await _quiet_hours_and_the_sms_rate_limit(engine)


async def _each_record_reaches_the_platform_once_by_its_key(engine: AsyncEngine) -> None:
    fake = FakeReceiver(["500", "500", "timeout", "drop", "500", "drop"])
    fake.hang_s = 1.5
    with serve(fake) as url:
        config = OutboxConfig(
            platform_http=HttpTarget(url=url, auth_header="Bearer s3cret", timeout_s=0.5),
            lease_s=1.0,
            backoff_s=0.05,
            backoff_max_s=0.2,
            batch=5,
        )
        await enqueue_records(engine, 12, times=2)  # enqueued twice: one message each
        deliverer = Deliverer(engine, config, worker="w1", rng=random.Random(7))
        await _drain(deliverer, engine)
        await deliverer.adapters[Channel.PLATFORM_HTTP].close()
    rows = await _rows(engine)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"delivered"}
    assert set(fake.accepted) == {record_key(i) for i in range(12)}
    assert fake.repeats >= 3  # the timed-out and dropped answers were repeated, same key
    assert all(fake.accepted[record_key(i)]["record_id"] == f"gw1-{i}" for i in range(12))
    assert {h["Authorization"] for h in fake.headers} == {"Bearer s3cret"}
    retried = [r for r in rows if int(str(r["attempts"])) > 1]
    assert retried and all(r["last_error"] is None for r in rows)


async def _quiet_hours_and_the_sms_rate_limit(engine: AsyncEngine) -> None:
    fake = FakeReceiver()
    night = dt.datetime(2026, 12, 7, 14, 30, tzinfo=dt.UTC)  # 22:30 in Beijing
    with serve(fake) as url:
        config = OutboxConfig(
            sms=SmsTarget(url=url, template_id="SMS_001", timeout_s=1.0),
            contacts={"staff:000123": Contact(phone="13812345678")},
            backoff_s=0.05,
        )
        async with engine.begin() as conn:
            for i in range(5):
                await store.enqueue(
                    conn,
                    channel=Channel.SMS,
                    key=f"ladder:c{i}:red_light",
                    kind="ladder.red_light",
                    recipient="staff:000123",
                    payload={"event": "ladder.red_light", "params": {"case_no": f"c{i}"}},
                    audience=Audience.STAFF,
                )
            await store.enqueue(
                conn,
                channel=Channel.SMS,
                key="applicant:c9:completed",
                kind="applicant.completed",
                recipient="applicant:c9",
                payload={"event": "applicant.completed", "phone": "13900001111", "params": {}},
                audience=Audience.CITIZEN,
            )
        deliverer = Deliverer(engine, config, worker="w1", clock=lambda: night)
        await deliverer.run_once()
        await deliverer.adapters[Channel.SMS].close()
    rows = {r["idem_key"]: r for r in await _rows(engine)}
    staff = [rows[f"ladder:c{i}:red_light"] for i in range(5)]
    assert [r["status"] for r in staff] == ["delivered"] * 3 + ["held"] * 2
    citizen = rows["applicant:c9:completed"]
    assert citizen["status"] == "pending" and citizen["attempts"] == 0
    assert citizen["next_attempt_at"] == dt.datetime(2026, 12, 8, 0, 0, tzinfo=dt.UTC)  # 08:00
    assert len(fake.seen) == 3
    sent = next(iter(fake.accepted.values()))
    assert sent["phone"] == "13812345678" and sent["template_id"] == "SMS_001"
    async with engine.connect() as conn:
        counts = await store.counts(conn, kind="ladder.red_light")
    assert (counts["delivered"], counts["held"], counts["pending"]) == (3, 2, 0)
