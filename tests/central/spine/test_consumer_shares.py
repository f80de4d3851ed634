"""The consumer's shares: gateways take turns in ingest groups, and one gateway cannot hold
more than its share of the receive slots."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from central.config import BrokerConfig, IngestConfig
from central.spine.admission import Admission
from central.spine.consumer import Consumer
from central.spine.reading import Incoming


def incoming(gateway: str, n: int, size: int = 10) -> Incoming:
    return Incoming(f"hw/v1/H/{gateway}/events", bytes([n % 256]) * size, datetime.now(UTC))


async def test_gateways_take_turns_and_groups_are_bounded_in_bytes() -> None:
    consumer = Consumer(BrokerConfig(), max_pending=256)
    for n in range(6):
        consumer.queue.put_nowait(incoming("flood", n))
    consumer.queue.put_nowait(incoming("quiet", 100))
    group = await consumer.next_group(max_group=3)
    assert [(m.topic.split("/")[3], m.payload[0]) for m in group] == [
        ("flood", 0),
        ("quiet", 100),
        ("flood", 1),
    ]  # the quiet hall is not sixth in line
    rest = await consumer.next_group(max_group=64, max_bytes=25)
    assert [m.payload[0] for m in rest] == [2, 3, 4]  # each gateway's own order kept


async def test_one_gateway_cannot_hold_more_than_its_share_of_slots() -> None:
    consumer = Consumer(BrokerConfig(), max_pending=256, per_gateway=4)
    consumer._mqtt._loop = asyncio.get_running_loop()
    for n in range(10):
        message = mqtt.MQTTMessage(topic=b"hw/v1/H/flood/events")
        message.payload = bytes([n])
        consumer._mqtt._paho_message(None, None, message)  # type: ignore[arg-type]
    quiet = mqtt.MQTTMessage(topic=b"hw/v1/H/quiet/events")
    consumer._mqtt._paho_message(None, None, quiet)  # type: ignore[arg-type]
    await asyncio.sleep(0)  # hand-overs to the loop run
    group = await consumer.next_group(max_group=64)
    assert [m.topic.split("/")[3] for m in group].count("flood") == 4
    assert consumer.shed["H/flood"] == 6 and "H/quiet" not in consumer.shed
    for msg in group:
        consumer.done(msg)
    again = mqtt.MQTTMessage(topic=b"hw/v1/H/flood/events")
    consumer._mqtt._paho_message(None, None, again)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert len(await consumer.next_group(max_group=64)) == 1  # its share is free again


async def test_command_results_are_never_dropped_for_a_flooding_gateway() -> None:
    consumer = Consumer(BrokerConfig(), max_pending=256, per_gateway=2)
    consumer._mqtt._loop = asyncio.get_running_loop()
    for topic in [b"hw/v1/H/flood/events"] * 3 + [b"hw/v1/H/flood/result"] * 2:
        consumer._mqtt._paho_message(None, None, mqtt.MQTTMessage(topic=topic))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    group = await consumer.next_group(max_group=64)
    assert sorted(m.topic.rsplit("/", 1)[1] for m in group) == ["events"] * 2 + ["result"] * 2
    for msg in group:
        consumer.done(msg)
    assert not consumer._held


def test_budget_applies_only_while_another_gateway_is_sending() -> None:
    admission = Admission(bytes_per_s=1000, messages_per_s=2, burst_s=1)
    # alone: far over the budget, all of it read
    assert all(admission.admit("H/flood", 5000, 10.0 + n / 1000) for n in range(100))
    assert admission.admit("H/quiet", 100, 10.2)  # another gateway speaks: contention
    assert not admission.admit("H/flood", 500, 10.3)  # its bucket was drained alone
    assert admission.admit("H/quiet", 100, 10.4)  # the quiet one stays within its own
    assert admission.admit("H/flood", 500, 10.9)  # refilled at its rate: read again
    assert not admission.admit("H/flood", 500, 10.95)
    assert all(admission.admit("H/flood", 5000, 12.0 + n / 1000) for n in range(10)), (
        "the quiet gateway is silent for over a second: no contention"
    )


def test_a_state_message_a_second_passes_over_the_budget() -> None:
    admission = Admission(bytes_per_s=100, messages_per_s=10, burst_s=1)
    admission.admit("H/quiet", 10, 0.0)
    verdicts = [admission.admit("H/flood", 1000, 0.1 + n * 0.1, state=True) for n in range(8)]
    assert verdicts.count(True) == 1  # the first passes, then not within the same second
    assert admission.admit("H/quiet", 10, 0.85)  # keep contention
    assert admission.admit("H/flood", 1000, 1.15, state=True)


async def test_over_budget_messages_are_dropped_unread_and_counted_results_never() -> None:
    consumer = Consumer(
        BrokerConfig(),
        max_pending=256,
        admission=Admission(bytes_per_s=10, messages_per_s=1, burst_s=1),
    )
    consumer._mqtt._loop = asyncio.get_running_loop()
    topics_sent = (
        [b"hw/v1/H/quiet/events"] + [b"hw/v1/H/flood/events"] * 5 + [b"hw/v1/H/flood/result"] * 3
    )
    for topic in topics_sent:
        message = mqtt.MQTTMessage(topic=topic)
        message.payload = b"x" * 5
        consumer._mqtt._paho_message(None, None, message)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    group = await consumer.next_group(max_group=64)
    read = sorted(m.topic.split("/", 3)[3] for m in group)
    assert read == ["flood/events"] + ["flood/result"] * 3 + ["quiet/events"]
    assert consumer.dropped() == {"H/flood": (4, 0)}


def test_budgets_are_validated() -> None:
    for bad in (
        {"gateway_mb_per_s": 0},
        {"gateway_messages_per_s": -1},
        {"gateway_burst_s": 0},
        {"gateway_burst_s": 3600},
    ):
        with pytest.raises(ValidationError):
            IngestConfig(**bad)
    assert IngestConfig().throttle is True
