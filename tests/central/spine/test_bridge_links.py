"""Tier bridges' link notifications through a real Mosquitto into the real aggregator, on both
stores: retained ones heard at start, a repeated state that keeps its ``changed_at``, hostile
payloads and names quarantined while the gateways' events go on being stored.
(The real county bridge killed and restarted: tests/deploy/test_tier_bridge.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.spine import bridges
from central.spine.aggregator import Aggregator
from central.spine.registry import register
from central.store.schema import gateways, quarantine
from tests.central.spine.test_ingest import message
from tests.support.broker import Broker

WAIT_S = 60.0


async def _until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def _links(engine: AsyncEngine) -> dict[str, bridges.Link]:
    return {link.bridge: link for link in await bridges.links(engine)}


async def _quarantined(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(quarantine.c.topic, quarantine.c.reason))).all()
    return sorted(f"{r.topic}: {r.reason}" for r in rows)


async def test_notifications_are_kept_and_hostile_ones_quarantined(
    tmp_path: Path, broker: Broker, database_url: str
) -> None:
    bridge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bridge-test")
    bridge.connect("127.0.0.1", broker.port)
    bridge.loop_start()

    def send(name: str, payload: bytes, retain: bool = True) -> None:
        bridge.publish(f"hw/bridge/{name}/state", payload, qos=1, retain=retain).wait_for_publish()

    config = CentralConfig.model_validate(
        {
            "database_url": database_url,
            "data_dir": str(tmp_path / "central"),
            "broker": {"host": "127.0.0.1", "port": broker.port},
            "http": {"enabled": False},
        }
    )
    aggregator = Aggregator(config)
    try:
        send("county2", b"0")  # retained before central starts: heard when it subscribes
        send("county3", b"maybe")
        send("bad.name", b"1")
        await aggregator.start()
        engine = aggregator.engine
        await register(engine, "H1", "gw1")

        async def county2_down() -> bridges.Link | None:
            link = (await _links(engine)).get("county2")
            return link if link is not None and not link.up else None

        first = await _until(county2_down, "county2's retained 0 stored")
        refused = await _until(
            lambda: _quarantined_both(engine), "both hostile notifications quarantined"
        )
        assert (
            "hw/bridge/county3/state: bridge notification: payload must be 0 or 1" in (refused[1])
        )
        assert "hw/bridge/bad.name/state: bridge notification: bridge 'bad.name'" in refused[0]
        assert set(await _links(engine)) == {"county2"}

        send("county2", b"0", retain=False)  # the same state again: since when stays

        async def heard_again() -> bridges.Link | None:
            link = (await _links(engine))["county2"]
            return link if link.heard_at > first.heard_at else None

        again = await _until(heard_again, "county2's second 0 heard")
        assert (again.up, again.changed_at) == (False, first.changed_at)

        send("county2", b"1")

        async def county2_up() -> bridges.Link | None:
            link = (await _links(engine))["county2"]
            return link if link.up else None

        up = await _until(county2_up, "county2 up")
        assert up.changed_at > first.changed_at and not up.alarm

        # ingest went on: a gateway's events are stored after the hostile notifications
        batch = message(range(1, 4))
        bridge.publish(batch.topic, batch.payload, qos=1).wait_for_publish()

        async def committed() -> bool:
            async with engine.connect() as conn:
                through = await conn.scalar(
                    select(gateways.c.committed_through).where(gateways.c.gateway_id == "gw1")
                )
            return through == 3

        await _until(committed, "gw1's events committed")
    finally:
        bridge.loop_stop()
        bridge.disconnect()
        await aggregator.stop()


async def _quarantined_both(engine: AsyncEngine) -> list[str] | None:
    found = await _quarantined(engine)
    return found if len(found) == 2 else None
