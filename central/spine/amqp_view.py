"""What ``hallwatch-central broker partitions`` shows of the province broker: each partition's
depth (live lanes' too) and the aggregators' heartbeats (their lag), asked of the first node
that answers. Read-only: it declares queues passively and consumes nothing."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractConnection

from central.config import AmqpIntake
from central.spine import amqp_share
from central.spine.amqp_intake import (
    CONNECT_TIMEOUT_S,
    LIVE_QUEUE,
    PARTITION_QUEUE,
    close_quietly,
    node_of,
)


@dataclass(frozen=True, slots=True)
class PartitionDepth:
    """One partition's lag: deliveries waiting in it (not yet handed to an aggregator) and how
    many aggregators are subscribed (one of them active); ``None`` when it does not exist yet."""

    name: str
    waiting: int | None
    consumers: int | None


@dataclass(frozen=True, slots=True)
class BrokerView:
    """What ``hallwatch-central broker partitions`` shows: the node asked, each partition's
    depth and the latest heartbeat of each live aggregator (its lag)."""

    node: str
    depths: list[PartitionDepth]
    aggregators: list[amqp_share.Heartbeat]


async def broker_view(intake: AmqpIntake, listen_s: float = 2.5) -> BrokerView:
    """Ask the first node that answers; heartbeats are heard for ``listen_s`` (they come once a
    second from each aggregator)."""
    failures = []
    for url in (u.get_secret_value() for u in intake.urls):
        try:
            connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            failures.append(f"{node_of(url)}: {type(exc).__name__}: {exc}")
            continue
        try:
            depths = await _depths(connection, intake.partitions)
            beats = await amqp_share.heartbeats(await connection.channel(), listen_s)
            return BrokerView(node_of(url), depths, beats)
        finally:
            await close_quietly(connection)
    raise ConnectionError("no broker node answered: " + "; ".join(failures))


async def _depths(connection: AbstractConnection, partitions: int) -> list[PartitionDepth]:
    depths = []
    names = [q.format(index=i) for q in (PARTITION_QUEUE, LIVE_QUEUE) for i in range(partitions)]
    for name in names:
        channel = await connection.channel()  # a missing queue closes its channel
        try:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result
            depths.append(PartitionDepth(name, result.message_count, result.consumer_count))
            await channel.close()
        except aio_pika.exceptions.ChannelNotFoundEntity:
            depths.append(PartitionDepth(name, None, None))
    return depths
