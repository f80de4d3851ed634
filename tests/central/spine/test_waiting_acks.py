"""A gateway whose batches wait at central longer than its ack timeout keeps hearing acks (its
last one, or committed_through 0), so it does not send them again; the real ack follows the
commit. Real Mosquitto and SQLite (the waiting is central's, not the store's)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import CentralConfig
from central.spine import aggregator as aggregator_module
from central.spine.aggregator import Aggregator
from central.spine.ingest import Ingestor
from central.spine.outcome import AckDecision
from central.spine.reading import Unit
from central.spine.registry import register
from protocols.envelope import Ack
from tests.central.spine.test_ingest import message
from tests.support.broker import Broker
from tests.support.databases import AT_HEAD, scratch_database

HELD_S = 4.0  # the commit is held this long: longer than two waiting-ack periods


def test_a_gateway_waiting_for_its_commit_hears_acks_meanwhile(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scratch_database("sqlite", tmp_path, AT_HEAD) as url:  # the waiting is central's own
        asyncio.run(_waiting_gateway_hears_acks(tmp_path, url, broker.port, monkeypatch))


async def _waiting_gateway_hears_acks(
    tmp_path: Path, database_url: str, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregator_module, "WAITING_ACK_S", 0.5)
    store = Ingestor.store

    async def slow_store(self: Ingestor, units: Sequence[Unit]) -> list[AckDecision]:
        await asyncio.sleep(HELD_S)
        return await store(self, units)

    monkeypatch.setattr(Ingestor, "store", slow_store)
    config = CentralConfig.model_validate(
        {
            "database_url": database_url,
            "data_dir": str(tmp_path / "central"),
            "broker": {"host": "127.0.0.1", "port": port, "instance": "wait1"},
            "http": {"enabled": False},
        }
    )
    aggregator = Aggregator(config)
    await aggregator.start()
    await register(aggregator.engine, "H1", "gw1")
    heard: list[tuple[float, Ack]] = []
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            heard.append((time.monotonic(), Ack.model_validate_json(msg.payload)))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw1-test")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe("hw/v1/H1/gw1/ack", qos=1)
        await asyncio.wait_for(aggregator.consumer.connected.wait(), 30)
        await asyncio.sleep(0.5)  # the subscription is in place
        batch = message(range(1, 4))
        client.publish(batch.topic, batch.payload, qos=1)
        deadline = time.monotonic() + 60
        while not any(a.committed_through == 3 for _, a in heard):
            assert time.monotonic() < deadline, heard
            await asyncio.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
        await aggregator.stop()
    with lock:
        waiting = [a for _, a in heard if a.committed_through == 0]
        final = next(at for at, a in heard if a.committed_through == 3)
    assert waiting, heard  # heard while its batch waited for the commit
    assert all(a.replay_from is None and a.rebase_to is None for a in waiting)
    assert min(at for at, a in heard if a.committed_through == 0) < final
