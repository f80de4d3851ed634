"""Reconnect storm (``./run.sh bench``): N simulated gateways, each holding a backlog of B events
(an outage), all reconnecting within S seconds to a private Mosquitto, one central on
PostgreSQL. Prints the time until every event is committed and until every gateway has its
final ack, the events/s, published ÷ produced and the lost and duplicated counts; asserts only
that nothing is lost or duplicated. Past ``LIMIT_S`` it stops and says what the gateways still
hold.

The gateways are the province bench's (``SimGateway``: the real send window with the uplink's
default limits, the real envelope, central's real acks; the journal in memory), on one asyncio
loop. Duplicates cannot be stored (``(gateway, seq)`` is the key), so "duplicated" counts
stored bodies that differ from what the gateway produced under that seq; "lost" counts events
acknowledged to their gateway (so dropped from its journal) beyond what central committed.

Environment: ``HALLWATCH_STORM_GATEWAYS`` (default 2000), ``HALLWATCH_STORM_BACKLOG`` (events
per gateway, default 2000), ``HALLWATCH_STORM_SPREAD_S`` (reconnects spread over, default 60),
``HALLWATCH_STORM_LIMIT_S`` (give up after, default 900).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from central.store.db import make_engine
from central.store.schema import events, gateways
from tests.bench.test_province_bench import (
    TICK_S,
    Driver,
    Figures,
    SimGateway,
    register_all,
)
from tests.support import procs
from tests.support.broker import Broker

pytestmark = pytest.mark.bench

GATEWAYS = int(os.environ.get("HALLWATCH_STORM_GATEWAYS", "2000"))
BACKLOG = int(os.environ.get("HALLWATCH_STORM_BACKLOG", "2000"))
SPREAD_S = float(os.environ.get("HALLWATCH_STORM_SPREAD_S", "60"))
LIMIT_S = float(os.environ.get("HALLWATCH_STORM_LIMIT_S", "900"))
# a stored body that is not the event the gateway produced under that seq (``n`` is the seq)
ALTERED = text("SELECT count(*) FROM events WHERE (body::jsonb ->> 'n')::bigint <> seq")


async def storm(port: int, url: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    figures = Figures()
    now = time.monotonic()
    busy: set[SimGateway] = set()
    sims = [SimGateway(f"S{n:04d}", f"sg{n:04d}", figures, now, busy) for n in range(GATEWAYS)]
    for sim in sims:
        for _ in range(BACKLOG):
            sim.produce(now)  # the outage's backlog, in the journal before the broker is back
    driver = Driver(loop)
    start = time.monotonic()
    offsets = sorted((random.uniform(0, SPREAD_S), n) for n in range(GATEWAYS))
    pending = list(offsets)

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(1.0)
            at = time.monotonic()
            for sim in sims:
                if sim.connected:
                    sim.client.loop_misc()
                    sim.state_due(at)

    misc = asyncio.create_task(keepalive())
    engine = make_engine(url)
    committed_at: float | None = None
    polled = 0.0
    try:
        while time.monotonic() - start < LIMIT_S:
            at = time.monotonic()
            while pending and pending[0][0] <= at - start:
                sim = sims[pending.pop(0)[1]]
                driver.attach(sim.client)
                sim.client.connect("127.0.0.1", port, keepalive=60)
            for sim in list(busy):
                sim.send(at)
            if committed_at is None and at - polled >= 1.0:
                polled = at
                if await _committed(engine) >= GATEWAYS * BACKLOG:
                    committed_at = time.monotonic() - start
            if not pending and not busy and committed_at is not None:
                break
            await asyncio.sleep(TICK_S)
        acked_at = time.monotonic() - start
        lost_acks = sum(1 for s in sims if s.acked < s.head)
        async with engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(events))).scalar() or 0
            wrong = (await conn.execute(ALTERED)).scalar() or 0
            rows = await conn.execute(select(gateways.c.gateway_id, gateways.c.committed_through))
            through = {gateway: int(seq or 0) for gateway, seq in rows}
        # acknowledged to its gateway (so dropped from its journal) but not stored: lost
        lost = sum(max(0, s.acked - through.get(s.gateway, 0)) for s in sims)
        held = sum(s.head - s.acked for s in sims)  # still in the journals when it stopped
    finally:
        misc.cancel()
        await engine.dispose()
        for sim in sims:
            sim.client.disconnect()
    total = GATEWAYS * BACKLOG
    return {
        "produced": total,
        "stored": int(stored),
        "lost": lost,
        "held": held,
        "duplicated_or_altered": int(wrong),
        "committed_s": committed_at,
        "acked_s": acked_at,
        "gateways_without_final_ack": lost_acks,
        "events_per_s": total / committed_at if committed_at else float("nan"),
        "published_over_produced": figures.published / max(total, 1),
    }


async def _committed(engine: Any) -> int:
    async with engine.connect() as conn:
        query = select(func.coalesce(func.sum(gateways.c.committed_through), 0))
        return int((await conn.execute(query)).scalar() or 0)


def test_reconnect_storm(tmp_path: Path, broker: Broker, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the province runs on PostgreSQL")

    register_all(database_url, [(f"S{n:04d}", f"sg{n:04d}") for n in range(GATEWAYS)])
    cen = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )
    cen.wait_for_log("central: connected to")  # subscribed before the gateways come back
    try:
        result = asyncio.run(storm(broker.port, database_url))
    finally:
        cen.stop()
    print(
        f"\nstorm on Mosquitto, PostgreSQL: {GATEWAYS} gateways × {BACKLOG} events, reconnecting "
        f"within {SPREAD_S:.0f} s: all committed at {result['committed_s'] or float('nan'):.1f} s,"
        " all acked at "
        f"{result['acked_s']:.1f} s ({result['gateways_without_final_ack']} gateways without "
        f"their final ack), {result['events_per_s']:.0f} events/s, published ÷ produced "
        f"{result['published_over_produced']:.2f}, stored {result['stored']} of "
        f"{result['produced']} ({result['held']} still held by their gateways), "
        f"lost {result['lost']}, duplicated or altered "
        f"{result['duplicated_or_altered']}"
    )
    assert result["duplicated_or_altered"] == 0 and result["lost"] == 0
    assert result["stored"] <= result["produced"]
