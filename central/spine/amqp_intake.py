"""Central's intake from the province broker (RabbitMQ): the gateways' MQTT messages read over
AMQP from partitioned quorum queues, acknowledged to the broker only after their commit.

The MQTT plugin publishes each gateway message to ``amq.topic`` with the topic's ``/`` as ``.``
(``hw/v1/H/G/events`` → ``hw.v1.H.G.events``). A consistent-hash exchange bound from
``amq.topic`` spreads them by routing key over ``partitions`` durable quorum queues
(replicated on the cluster's nodes), so one gateway's events always go to one queue and stay
in order. Each queue has a single active consumer. The aggregators share the partitions
(``amqp_share``: heartbeats on the broker, rendezvous hashing over the live ones): each consumes
its share and takes over a departed one's partitions once its heartbeats stop.

The gateways' fresh events (``hw/v1/H/G/live``) have partitions of their own
(``hw.intake.live.N``, fed by their own consistent-hash exchange, consumed on an AMQP channel of
their own with their own prefetch). Every aggregator subscribes to all of them: the broker's
single active consumer reads each from one and promotes a waiting one as soon as that one's
connection closes. Their messages wait apart from the rest (``turns.Waiting``) and the
aggregator commits them on a path of its own (``next_live_group``), beside the drain's groups,
so in a reconnect storm a live batch waits neither behind the backlogs delivered before it nor
for the drain's group in progress. A gateway's live and drain batches may so be in two
transactions at once (of one aggregator or of two); the store's ``(gateway, seq)`` key and its
lock on the gateway row keep that exactly once, and central acknowledges the contiguous seq
(what a lane sent beyond a gap waits in ``pending_ranges``). Without a live path (SQLite)
every drain group takes the live batches first.

Deliveries are acknowledged after ``done()`` (the aggregator calls it once the group holding
the message has committed or quarantined it), in batches: the highest delivery tag below which
everything is done, ``multiple=True``. The prefetch per partition bounds what waits unacked.

The end-to-end ack (and commands, evidence receipts) go back as AMQP publishes to
``amq.topic`` with the MQTT topic as routing key; the plugin delivers them to the gateway's
subscription. When a node dies, the connection is opened again on the next URL: what was
delivered and not acknowledged is delivered again (to this process or another), and the store's
``(gateway, seq)`` key makes that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from central.config import AmqpIntake
from central.spine import amqp_share, bridges
from central.spine.reading import Incoming
from central.spine.turns import GROUP_BYTES, LIVE_GROUP_BYTES, Waiting, is_live
from hallkit.clock import utc_now
from hallkit.supervise import TaskRecord, TaskState
from protocols import topics

log = logging.getLogger(__name__)

INTAKE_EXCHANGE = "hw.intake"  # consistent-hash, fed from amq.topic
PARTITION_QUEUE = "hw.intake.{index}"
LIVE_EXCHANGE = "hw.intake.live"  # consistent-hash too, for the live lanes only
LIVE_QUEUE = "hw.intake.live.{index}"
MQTT_EXCHANGE = "amq.topic"  # where the MQTT plugin publishes and reads
FROM_GATEWAYS = (
    topics.Channel.EVENTS,
    topics.Channel.STATE,
    topics.Channel.RESULT,
    topics.Channel.EVIDENCE,
)
CONNECT_TIMEOUT_S = 5.0
RETRY_PAUSE_S = 0.5  # after a failed round over every node


def routing_key(topic_name: str) -> str:
    """The MQTT plugin's routing key for a topic (our ids hold no ``.``)."""
    return topic_name.replace("/", ".")


def topic_of(key: str) -> str:
    return key.replace(".", "/")


@dataclass
class _Session:
    """One connection's channel and what it delivered that is not acknowledged yet."""

    channel: AbstractChannel
    amq_topic: AbstractExchange
    unacked: deque[AbstractIncomingMessage] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)  # delivery tags handled, waiting for the ack
    partition_of: dict[int, int] = field(default_factory=dict)  # delivery tag → partition
    consumers: dict[int, tuple[AbstractQueue, str]] = field(default_factory=dict)  # consumed
    live_consumers: dict[int, tuple[AbstractQueue, str]] = field(default_factory=dict)
    open: bool = True
    ack_through: AbstractIncomingMessage | None = None  # the next multiple ack to send
    # the live partitions' own channel: its multiple acks never wait for a drain delivery
    # before them, which would hold the live prefetch full behind the backlog
    live: _Session | None = None
    acking: bool = False  # one ack at a time: a later one sent first voids the earlier tag

    async def send_acks(self) -> None:
        self.acking = True
        try:
            while self.open and self.ack_through is not None:
                last, self.ack_through = self.ack_through, None
                await last.ack(multiple=True)
        except Exception as exc:  # the channel went away: the broker delivers them again
            log.info("central: ack not sent (%s); the broker redelivers", exc)
        finally:
            self.acking = False


class AmqpPublication:
    """An AMQP publish with publisher confirms; ``is_published`` once the broker confirmed."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done

    def is_published(self) -> bool:
        return self.done.done() and not self.done.cancelled() and self.done.exception() is None

    async def wait(self, timeout: float) -> bool:
        await asyncio.wait({self.done}, timeout=timeout)
        return self.is_published()


class AmqpConsumer:
    """The aggregator's consumer over AMQP; the same interface as the MQTT ``Consumer``."""

    def __init__(self, intake: AmqpIntake, record: TaskRecord | None = None) -> None:
        self.intake = intake
        self.record = record or TaskRecord("mqtt.consumer", state=TaskState.RESTARTING)
        self.record.state = TaskState.RESTARTING  # until the first connection
        self.connected = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._origin: dict[int, tuple[_Session, AbstractIncomingMessage]] = {}  # id(Incoming)
        self.waiting = Waiting()  # received, not yet in a group
        self._publishing: set[asyncio.Task[None]] = set()
        self.identity = amqp_share.new_identity()
        self.last_commit: datetime | None = None
        self.committed = 0

    async def start(self) -> None:
        self._stopping = False
        self._runner = asyncio.create_task(self._run(), name="amqp.intake")

    async def stop(self) -> None:
        self.record.state = TaskState.STOPPED
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        self.connected.clear()

    # -- the aggregator's side ------------------------------------------------------------

    async def next_group(self, max_group: int, max_bytes: int = GROUP_BYTES) -> list[Incoming]:
        """The next messages to ingest together: gateways take turns, one message each (the
        live lanes' batches first, unless they have a path of their own)."""
        return await self.waiting.drain_group(max_group, max_bytes)

    async def next_live_group(
        self, max_group: int, max_bytes: int = LIVE_GROUP_BYTES
    ) -> list[Incoming]:
        """The live lanes' batches, gateways in turns (``waiting.live_apart``)."""
        return await self.waiting.live_group(max_group, max_bytes)

    def senders_waiting(self) -> list[str]:
        """Senders (hall/gateway) with messages received and not yet taken into a group."""
        return self.waiting.senders()

    def done(self, message: Incoming) -> None:
        """Committed (or quarantined): acknowledge it, with everything delivered before it
        that is done too, in one ``multiple=True`` ack."""
        origin = self._origin.pop(id(message), None)
        if origin is None:
            return
        session, delivery = origin
        if not session.open:
            return
        session.done.add(delivery.delivery_tag or 0)
        self.last_commit = utc_now()
        self.committed += 1
        last: AbstractIncomingMessage | None = None
        while session.unacked and (session.unacked[0].delivery_tag or 0) in session.done:
            last = session.unacked.popleft()
            session.done.discard(last.delivery_tag or 0)
            session.partition_of.pop(last.delivery_tag or 0, None)
        if last is not None:
            session.ack_through = last
            if not session.acking:
                self._spawn(session.send_acks())

    def publish(self, topic: str, payload: bytes) -> AmqpPublication:
        """To a gateway's MQTT topic (ack, cmd, receipt) through ``amq.topic``."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session = self._session
        if session is None or not session.open:
            done.set_exception(ConnectionError("not connected to the broker"))
            done.exception()  # retrieved: nobody need await it
            return AmqpPublication(done)
        message = aio_pika.Message(
            payload,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={"x-mqtt-publish-qos": 1},
        )
        self._spawn(_publish(session, routing_key(topic), message, done))
        return AmqpPublication(done)

    def dropped(self) -> dict[str, tuple[int, int]]:
        """Nothing is dropped unread here: the prefetch holds the rest in the broker."""
        return {}

    # -- the connection --------------------------------------------------------------------

    async def _run(self) -> None:
        urls = [url.get_secret_value() for url in self.intake.urls]
        turn = 0
        while not self._stopping:
            url = urls[turn % len(urls)]
            turn += 1
            where = node_of(url)
            try:
                connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_S)
            except Exception as exc:  # refused, timed out, DNS: try the next node
                self._down(f"{where}: {type(exc).__name__}: {exc}")
                if turn % len(urls) == 0:
                    await asyncio.sleep(RETRY_PAUSE_S)
                continue
            try:
                await self._serve(connection, where)
            except asyncio.CancelledError:
                await asyncio.shield(close_quietly(connection))
                raise
            except Exception as exc:
                self._down(f"{where}: {type(exc).__name__}: {exc}")
            finally:
                self._close_session()
                await close_quietly(connection)

    async def _serve(self, connection: AbstractConnection, where: str) -> None:
        lost = asyncio.Event()
        why: list[str] = []

        def closed(_sender: object, exc: BaseException | None = None) -> None:
            why.append(f"{type(exc).__name__}: {exc}" if exc is not None else "closed")
            lost.set()

        connection.close_callbacks.add(closed)
        channel = await connection.channel(publisher_confirms=True)
        channel.close_callbacks.add(closed)
        queues = await _declare(channel, self.intake.partitions)
        amq_topic = await channel.get_exchange(MQTT_EXCHANGE, ensure=False)
        live_channel = await connection.channel()
        live_channel.close_callbacks.add(closed)
        await live_channel.set_qos(prefetch_count=self.intake.live_prefetch)
        live_queues = await _declare_live(live_channel, self.intake.partitions)
        beats = await connection.channel()
        beats.close_callbacks.add(closed)
        members = amqp_share.Members(self.identity)
        exchange = await amqp_share.listen(beats, members.hear, self.identity)
        session = _Session(channel, amq_topic, live=_Session(live_channel, amq_topic))
        self._session = session
        partitions = _Partitions(queues, live_queues)
        await self._stand_by_live(session, partitions)
        await self._follow(session, partitions, members.live())
        log.info(
            "central: consuming %d partitions on %s (aggregator %s)",
            len(session.consumers),
            where,
            self.identity,
        )
        self.connected.set()
        self.record.state = TaskState.RUNNING
        while not lost.is_set():
            await amqp_share.announce(exchange, self.heartbeat(session))
            await self._follow(session, partitions, members.live())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), amqp_share.BEAT_S)
        raise ConnectionError(f"connection lost ({why[0] if why else 'closed'})")

    async def _stand_by_live(self, session: _Session, partitions: _Partitions) -> None:
        """Subscribe to every live partition, on their own channel (its prefetch set once):
        the broker's single active consumer reads each from one aggregator and promotes a
        waiting one the moment that one's connection closes, with no heartbeat to miss
        first, so a killed aggregator holds up no hall's presses. The live batches are few;
        sharing them out is not worth a gap."""
        assert session.live is not None
        for index, queue in enumerate(partitions.live_queues):
            deliver = functools.partial(self._deliver, session.live, index)
            session.live_consumers[index] = (queue, await queue.consume(deliver, no_ack=False))

    async def _follow(
        self, session: _Session, partitions: _Partitions, live: frozenset[str]
    ) -> None:
        """Consume this aggregator's share of the drain's partitions among the live
        aggregators."""
        mine = amqp_share.share(len(partitions.queues), self.identity, live)
        gone = set(session.consumers) - mine
        for index in sorted(gone):
            queue, tag = session.consumers.pop(index)
            await queue.cancel(tag)  # deliveries held are still committed and acknowledged
        gained = mine - set(session.consumers)
        for index in sorted(gained):
            # the prefetch is per consumer (basic.qos before basic.consume)
            await session.channel.set_qos(prefetch_count=self.intake.prefetch)
            deliver = functools.partial(self._deliver, session, index)
            queue = partitions.queues[index]
            session.consumers[index] = (queue, await queue.consume(deliver, no_ack=False))
        if gone or gained:
            log.info(
                "central: %d aggregator(s) live; consuming partitions %s",
                len(live),
                ",".join(str(p) for p in sorted(session.consumers)) or "none",
            )

    def heartbeat(self, session: _Session) -> amqp_share.Heartbeat:
        unacked: dict[int, int] = {}
        held = [*session.partition_of.values()]
        if session.live is not None:
            held += session.live.partition_of.values()
        for partition in held:
            unacked[partition] = unacked.get(partition, 0) + 1
        return amqp_share.Heartbeat(
            aggregator=self.identity,
            partitions=tuple(sorted(session.consumers)),
            unacked=unacked,
            last_commit=self.last_commit,
            committed=self.committed,
        )

    async def _deliver(
        self, session: _Session, partition: int, delivery: AbstractIncomingMessage
    ) -> None:
        if not session.open:
            return
        session.unacked.append(delivery)
        session.partition_of[delivery.delivery_tag or 0] = partition
        message = Incoming(topic_of(delivery.routing_key or ""), delivery.body, utc_now())
        self._origin[id(message)] = (session, delivery)
        self.waiting.add(message, live=is_live(message.topic))

    def _close_session(self) -> None:
        session, self._session = self._session, None
        for closing in (session, session and session.live):
            if closing is not None:
                closing.open = False
                closing.unacked.clear()
                closing.done.clear()
                closing.partition_of.clear()
                closing.consumers.clear()
                closing.live_consumers.clear()
        self._origin = {k: v for k, v in self._origin.items() if v[0].open}
        # delivered on the connection that has gone: the broker delivers them again
        self.waiting.keep(lambda msg: id(msg) in self._origin)

    def _down(self, reason: str) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        if self._stopping:
            return
        if was_up:
            log.warning("central: lost the broker (%s); trying the next node", reason)
            self.record.failed_with(f"disconnected from the broker: {reason}")
            self.record.restarts += 1
        else:
            log.warning("central: cannot reach the broker (%s)", reason)
        self.record.state = TaskState.RESTARTING

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)


@dataclass(frozen=True, slots=True)
class _Partitions:
    queues: list[AbstractQueue]
    live_queues: list[AbstractQueue]


async def _declare(channel: AbstractChannel, partitions: int) -> list[AbstractQueue]:
    """The partitions, and the tier bridges' link notifications hashed onto them too."""
    ring = await _declare_ring(channel, INTAKE_EXCHANGE, FROM_GATEWAYS, PARTITION_QUEUE, partitions)
    intake = await channel.get_exchange(INTAKE_EXCHANGE, ensure=False)  # declared just now
    await intake.bind(MQTT_EXCHANGE, bridges.INTAKE_KEY)
    return ring


async def _declare_live(channel: AbstractChannel, partitions: int) -> list[AbstractQueue]:
    """The live lanes' partitions, as many as the others."""
    return await _declare_ring(
        channel, LIVE_EXCHANGE, (topics.Channel.LIVE,), LIVE_QUEUE, partitions
    )


async def _declare_ring(
    channel: AbstractChannel,
    exchange: str,
    channels: tuple[topics.Channel, ...],
    queue_name: str,
    partitions: int,
) -> list[AbstractQueue]:
    """A consistent-hash exchange fed from ``amq.topic`` with these channels, and its
    partitions: durable quorum queues, each with a single active consumer."""
    intake = await channel.declare_exchange(
        exchange, aio_pika.ExchangeType.X_CONSISTENT_HASH, durable=True
    )
    for channel_name in channels:
        await intake.bind(MQTT_EXCHANGE, routing_key(topics.subscription(channel_name, "*", "*")))
    queues = []
    for index in range(partitions):
        queue = await channel.declare_queue(
            queue_name.format(index=index),
            durable=True,
            arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
        )
        await queue.bind(intake, routing_key="1")  # the partition's weight on the hash ring
        queues.append(queue)
    return queues


async def _publish(
    session: _Session, key: str, message: aio_pika.Message, done: asyncio.Future[None]
) -> None:
    try:
        await session.amq_topic.publish(message, routing_key=key)
    except Exception as exc:
        if not done.done():
            done.set_exception(ConnectionError(f"publish failed: {exc}"))
            done.exception()
        return
    if not done.done():
        done.set_result(None)


async def close_quietly(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):  # already gone
        await asyncio.wait_for(connection.close(), 2.0)


def node_of(url: str) -> str:
    """host:port of an AMQP URL, without the credentials (for logs)."""
    return url.rsplit("@", 1)[-1].split("/", 1)[0]
