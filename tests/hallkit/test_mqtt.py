"""The one paho wrapper against a real Mosquitto: futures, the message stream, acknowledgements."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

from hallkit.mqtt import Acks, Backoff, ClientOptions, Connection, Message, MqttClient, Will
from protocols.transport import BrokerEndpoint
from tests.support.broker import Broker


async def _up(client: MqttClient) -> list[Connection]:
    changes: list[Connection] = []
    up = asyncio.Event()

    def seen(change: Connection) -> None:
        changes.append(change)
        if change.up:
            up.set()

    client._on_connection = seen
    await client.start()
    await asyncio.wait_for(up.wait(), 10)
    return changes


async def _next(stream: AsyncIterator[Message]) -> Message:
    async with asyncio.timeout(10):
        return await anext(stream)


async def test_publish_and_subscribe_resolve_on_the_brokers_answers(broker: Broker) -> None:
    endpoint = BrokerEndpoint(port=broker.port)
    reader = MqttClient(endpoint, ClientOptions("reader", subscriptions=(("t/#", 1),)))
    writer = MqttClient(endpoint, ClientOptions("writer"))
    try:
        changes = await _up(reader)
        assert changes[0].up and changes[0].subscribed is not None
        assert not any(r.is_failure for r in await asyncio.wait_for(changes[0].subscribed, 10))
        await _up(writer)
        sent = writer.publish("t/a", b"one")
        assert sent.sent and sent.queued
        assert await sent.wait(10) and sent.is_published()
        message = await _next(reader.messages())
        assert (message.topic, message.payload, message.qos) == ("t/a", b"one", 1)
        more = await asyncio.wait_for(reader.subscribe([("u/#", 1)]), 10)
        assert not more[0].is_failure
        assert await writer.publish("u/b", b"two").wait(10)
        assert (await _next(reader.messages())).payload == b"two"
    finally:
        reader.stop()
        writer.stop()


async def test_a_refused_message_stays_with_the_broker_until_accepted(broker: Broker) -> None:
    endpoint = BrokerEndpoint(port=broker.port)
    take = False
    delivered: list[Message] = []
    arrived = asyncio.Event()

    def deliver(message: Message) -> None:
        delivered.append(message)
        arrived.set()

    def receiver() -> MqttClient:
        return MqttClient(
            endpoint,
            ClientOptions(
                "picky", clean_session=False, subscriptions=(("q", 1),), acks=Acks.ON_ACCEPT
            ),
            receive=lambda topic, size: take,
            deliver=deliver,
        )

    writer = MqttClient(endpoint, ClientOptions("writer2"))
    picky = receiver()
    try:
        await _up(picky)
        await _up(writer)
        assert await writer.publish("q", b"keep me").wait(10)
        await asyncio.sleep(0.5)
        assert delivered == []  # refused: neither delivered nor acknowledged
        picky.stop()
        take = True
        picky = receiver()
        await _up(picky)
        await asyncio.wait_for(arrived.wait(), 10)
        assert delivered[0].payload == b"keep me"  # the broker delivered it again
    finally:
        picky.stop()
        writer.stop()


async def test_the_will_is_published_when_the_connection_dies(broker: Broker) -> None:
    endpoint = BrokerEndpoint(port=broker.port, keepalive_s=5)
    watcher = MqttClient(endpoint, ClientOptions("watcher", subscriptions=(("state", 1),)))
    dying = MqttClient(endpoint, ClientOptions("dying", will=Will("state", b"gone")))
    try:
        changes = await _up(watcher)
        assert changes[0].subscribed is not None
        await asyncio.wait_for(changes[0].subscribed, 10)
        await _up(dying)
        assert dying._client is not None
        sock = dying._client.socket()
        assert sock is not None
        sock.close()  # not a clean disconnect
        assert (await _next(watcher.messages())).payload == b"gone"
    finally:
        dying.stop()
        watcher.stop()


async def test_one_attempt_without_retry_raises_when_nothing_listens() -> None:
    client = MqttClient(BrokerEndpoint(port=1), ClientOptions("once", retry=False))
    try:
        await client.start()
    except OSError:
        pass
    else:
        raise AssertionError("connected to nothing")
    finally:
        client.stop()


def test_the_reconnect_backoff_is_jittered_doubling_and_bounded() -> None:
    backoff = Backoff(0.25, 1.0, random.Random(7))
    ceilings = [0.25, 0.5, 1.0, 1.0, 1.0]
    for ceiling in ceilings:
        assert 0.0 <= backoff.next_delay() <= ceiling
    many = [Backoff(0.25, 1.0, random.Random(seed)) for seed in range(200)]
    for b in many:
        b.attempts = 10
    delays = [b.next_delay() for b in many]
    assert max(delays) <= 1.0
    # spread over the whole second, not one instant: every quarter holds some
    assert all(any(q / 4 <= d < (q + 1) / 4 for d in delays) for q in range(4))
    backoff.reset()
    assert backoff.next_delay() <= 0.25


async def test_a_client_is_back_within_about_a_second_of_its_broker(broker: Broker) -> None:
    """After a long outage the wait stays at most a second: no 15 s doubling to sit out."""
    client = MqttClient(BrokerEndpoint(port=broker.port), ClientOptions("returning"))
    ups: list[float] = []
    back = asyncio.Event()

    def seen(change: Connection) -> None:
        if change.up:
            ups.append(time.monotonic())
            back.set()

    client._on_connection = seen
    try:
        await client.start()
        await asyncio.wait_for(back.wait(), 10)
        back.clear()
        broker.stop()
        await asyncio.sleep(6)  # many failed attempts: the backoff reaches its bound
        assert not back.is_set()
        restarted = time.monotonic()
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(back.wait(), 10)
        assert ups[-1] - restarted < 2.5  # at most 1 s of wait, plus a loaded machine
    finally:
        client.stop()
