"""The consumer's shares: gateways take turns in ingest groups, and one gateway cannot hold
more than its share of the receive slots."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from central.config import BrokerConfig
from central.consumer import Consumer
from central.ingest import Incoming


def incoming(gateway: str, n: int, size: int = 10) -> Incoming:
    return Incoming(f"hw/v1/H/{gateway}/events", bytes([n % 256]) * size, datetime.now(UTC))


async def test_gateways_take_turns_and_groups_are_bounded_in_bytes() -> None:
    consumer = Consumer(BrokerConfig(), max_pending=256)
    for n in range(6):
        consumer.queue.put_nowait(incoming("flood", n))
    consumer.queue.put_nowait(incoming("quiet", 100))
    group = await consumer.next_group(max_group=3)
    assert [(m.topic.split("/")[3], m.payload[0]) for m in group] == [
        ("flood", 0), ("quiet", 100), ("flood", 1)]  # the quiet hall is not sixth in line
    rest = await consumer.next_group(max_group=64, max_bytes=25)
    assert [m.payload[0] for m in rest] == [2, 3, 4]  # each gateway's own order kept


async def test_one_gateway_cannot_hold_more_than_its_share_of_slots() -> None:
    consumer = Consumer(BrokerConfig(), max_pending=256, per_gateway=4)
    consumer._loop = asyncio.get_running_loop()
    for n in range(10):
        message = mqtt.MQTTMessage(topic=b"hw/v1/H/flood/events")
        message.payload = bytes([n])
        consumer._paho_message(None, None, message)  # type: ignore[arg-type]
    quiet = mqtt.MQTTMessage(topic=b"hw/v1/H/quiet/events")
    consumer._paho_message(None, None, quiet)  # type: ignore[arg-type]
    await asyncio.sleep(0)  # hand-overs to the loop run
    group = await consumer.next_group(max_group=64)
    assert [m.topic.split("/")[3] for m in group].count("flood") == 4
    assert consumer.shed["H/flood"] == 6 and "H/quiet" not in consumer.shed
    for msg in group:
        consumer.done(msg)
    again = mqtt.MQTTMessage(topic=b"hw/v1/H/flood/events")
    consumer._paho_message(None, None, again)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert len(await consumer.next_group(max_group=64)) == 1  # its share is free again


async def test_command_results_are_never_dropped_for_a_flooding_gateway() -> None:
    consumer = Consumer(BrokerConfig(), max_pending=256, per_gateway=2)
    consumer._loop = asyncio.get_running_loop()
    for topic in [b"hw/v1/H/flood/events"] * 3 + [b"hw/v1/H/flood/result"] * 2:
        consumer._paho_message(None, None, mqtt.MQTTMessage(topic=topic))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    group = await consumer.next_group(max_group=64)
    assert sorted(m.topic.rsplit("/", 1)[1] for m in group) == ["events"] * 2 + ["result"] * 2
    for msg in group:
        consumer.done(msg)
    assert not consumer._held
