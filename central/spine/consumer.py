"""Central's MQTT side: one broker client per aggregator process (the shared kit's paho wrapper,
``hallkit/mqtt.py``), in a shared-subscription group.

paho runs in its own thread; messages are handed to asyncio without blocking the loop, and
paho's thread is never blocked either: it is the thread that writes what central publishes,
above all the acknowledgements to the gateways. (It once waited for a free slot when
``max_pending`` messages waited for their commit; acks then starved behind the intake, gateways
timed out and sent their windows again, and the load multiplied.)

Back-pressure is the broker's own flow control instead (``Acks.PACED``): a received message is
acknowledged to the broker (PUBACK) at once while fewer than ``max_pending`` messages and
``PENDING_BYTES`` wait for their commit, else only when enough of them have been committed.
Mosquitto sends a client at most ``max_inflight_messages`` (20) unacknowledged QoS 1 messages
(2.0.11 lets a few dozen more through after PUBACKs; measured), so intake slows to what ingest
takes, memory stays bounded (the limits plus that many messages of at most 1 MiB), and
the queue waits at the broker (bounded by its ``max_queued_bytes``; what it drops beyond, the
gateways send again when acks stay away). A second connection for the acks is not possible:
the TLS broker forces the client id to the certificate's name (``use_username_as_clientid``),
so a second connection with central's certificate would take over the first. Messages lost in a
crash are not our problem to recover: the gateway resends everything central has not
acknowledged.

A process with a configured ``broker.instance`` keeps a persistent session (fixed client id,
``clean_session=False``): what gateways publish while it reconnects or restarts, command
results above all (a gateway sends each once), is queued by the broker and delivered when it is
back. Without a configured instance the client id changes with every process (``p<pid>``), so
the session is clean: a persistent one would keep taking its share of the stream for days.
The connection's state is the ``mqtt.consumer`` record in ``/healthz``.

Groups for ingest are taken from the received messages in turns, one gateway after another
(each gateway's own messages in order), and bounded in bytes: a gateway with a backlog of large
or costly messages does not put them all ahead of another hall's next batch. When the
aggregator has a live path (PostgreSQL: ``turns.Waiting.live_apart``) the live lanes' batches
(``hw/v1/H/G/live``) wait apart and it commits them beside the drain's groups
(``next_live_group``), so a hall's presses do not wait for another gateway's backlog being
committed; otherwise (SQLite, one writer) they are read in arrival order with the rest.

While another gateway holds slots, one gateway may hold at most ``per_gateway`` of them: what
it sends beyond them is dropped unread (not acknowledged, so a real gateway sends it again),
which keeps a flooding gateway from filling the slots that every other hall's messages need. A
gateway alone is never cut (the broker's flow control above bounds it). A gateway's uplink keeps
far fewer batches in flight than that.

Before any of that, each gateway's messages pass its rate budget (central/spine/admission.py),
checked on paho's thread before anything is read: under contention a flooding gateway's messages
beyond it are dropped at the cost of a few dict lookups, so the CPU that parsing them would take
stays with the other halls. Both kinds of drop are counted per gateway (``shed``,
``throttled``), logged at most every ``SHED_LOG_INTERVAL_S`` and raised by the aggregator as a
gateway alarm.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque

from central.config import BrokerConfig
from central.spine import bridges
from central.spine.admission import Admission
from central.spine.reading import Incoming
from central.spine.turns import GROUP_BYTES, LIVE_GROUP_BYTES, Waiting, is_live, sender_of
from hallkit.mqtt import Acks, ClientOptions, Connection, Message, MqttClient, Publication
from hallkit.supervise import TaskRecord, TaskState
from protocols import topics

log = logging.getLogger(__name__)

PENDING_BYTES = 32 * 1024 * 1024  # received, not yet committed: beyond it PUBACKs wait
PER_GATEWAY_PENDING = 64  # a gateway's uplink keeps ~20 batches in flight (window / batch)
SHED_LOG_INTERVAL_S = 10.0


class Consumer:
    def __init__(
        self,
        broker: BrokerConfig,
        max_pending: int,
        record: TaskRecord | None = None,
        *,
        per_gateway: int = PER_GATEWAY_PENDING,
        admission: Admission | None = None,
        max_bytes: int = PENDING_BYTES,
    ) -> None:
        self.broker = broker
        self.record = record or TaskRecord("mqtt.consumer", state=TaskState.RESTARTING)
        self.record.state = TaskState.RESTARTING  # until the first connection
        self._stopping = False
        self.connected = asyncio.Event()
        self._max_pending = max_pending
        self._max_bytes = max_bytes
        self.pending = 0  # handed over, not yet done (the loop's side only)
        self.pending_bytes = 0
        self._unacked: deque[Message] = deque()  # PUBACKs held back: the broker waits
        self._per_gateway = min(per_gateway, max_pending)
        self._held: Counter[str] = Counter()  # slots held per gateway (paho's thread and ours)
        self._held_lock = threading.Lock()
        self.shed: Counter[str] = Counter()  # messages dropped over a gateway's share
        self.throttled: Counter[str] = Counter()  # messages dropped over its rate budget
        self._admission = admission
        self.waiting = Waiting()  # received, not yet in a group
        self._shed_logged = 0.0
        group = broker.group
        self._mqtt = MqttClient(
            broker,
            ClientOptions(
                client_id=f"{group}-{broker.instance}",
                clean_session="instance" not in broker.model_fields_set,
                subscriptions=(
                    *(
                        (topics.shared(group, topics.subscription(channel)), 1)
                        for channel in (
                            topics.Channel.EVENTS,
                            topics.Channel.LIVE,  # in arrival order here (a city's one broker)
                            topics.Channel.STATE,
                            topics.Channel.RESULT,
                            topics.Channel.EVIDENCE,
                        )
                    ),
                    # every aggregator: a shared subscription gets no retained messages
                    (bridges.STATES, 1),
                ),
                acks=Acks.PACED,
                max_inflight=100,
                logger=log.getChild("paho"),
            ),
            on_connection=self._on_connection,
            receive=self._admit,
            deliver=self._hand_over,
        )

    async def start(self) -> None:
        self._stopping = False
        await self._mqtt.start()

    async def stop(self) -> None:
        self.record.state = TaskState.STOPPED
        # the PUBACKs held back are never sent: in a persistent session the broker delivers
        # those messages again next time
        self._unacked.clear()
        self._stopping = True
        self._mqtt.stop()

    async def next_group(self, max_group: int, max_bytes: int = GROUP_BYTES) -> list[Incoming]:
        """The next messages to ingest together: gateways take turns, one message each."""
        return await self.waiting.drain_group(max_group, max_bytes)

    async def next_live_group(
        self, max_group: int, max_bytes: int = LIVE_GROUP_BYTES
    ) -> list[Incoming]:
        """The live lanes' batches, gateways in turns (``waiting.live_apart``)."""
        return await self.waiting.live_group(max_group, max_bytes)

    def senders_waiting(self) -> list[str]:
        """Senders (hall/gateway) with messages received and not yet taken into a group."""
        return self.waiting.senders()

    def receive(self, msg: Incoming) -> None:
        """A received message waits for its turn in a group (apart when it is a live lane's
        batch and the aggregator commits those on their own)."""
        self.waiting.add(msg, live=self.waiting.live_apart and is_live(msg.topic))

    def done(self, message: Incoming) -> None:
        """One received message is committed (or quarantined): free its share, and let the
        broker send more if it waits for our PUBACKs."""
        sender = _share_of(message.topic)
        if sender is not None:
            with self._held_lock:
                self._held[sender] -= 1
                if self._held[sender] <= 0:
                    del self._held[sender]
        self.pending -= 1
        self.pending_bytes -= len(message.payload)
        while self._unacked and self._room():
            self._mqtt.ack(self._unacked.popleft())

    @property
    def paused(self) -> bool:
        """PUBACKs are held back: the broker sends at most its in-flight limit more."""
        return bool(self._unacked)

    def _room(self) -> bool:
        return self.pending <= self._max_pending and self.pending_bytes <= self._max_bytes

    def publish(self, topic: str, payload: bytes) -> Publication:
        return self._mqtt.publish(topic, payload, qos=1)

    def _on_connection(self, change: Connection) -> None:
        if change.refused:
            log.error("central: broker refused the connection: %s", change.reason)
            self._connected(False, f"refused: {change.reason}")
        elif change.up:
            log.info(
                "central: connected to %s:%s as %s-%s",
                self.broker.host,
                self.broker.port,
                self.broker.group,
                self.broker.instance,
            )
            self._connected(True, "")
        else:
            log.warning("central: disconnected from broker (%s)", change.reason)
            self._connected(False, change.reason)

    def _connected(self, up: bool, reason: str) -> None:
        if up:
            self.connected.set()
            self.record.state = TaskState.RUNNING
            return
        self.connected.clear()
        # their packet ids belong to the lost connection: a persistent session delivers those
        # messages again (read twice, stored once), a clean one forgets them
        self._unacked.clear()
        if not self._stopping:  # paho reconnects by itself; counted like a restart
            self.record.failed_with(f"disconnected from the broker: {reason}")
            self.record.state = TaskState.RESTARTING
            self.record.restarts += 1

    def _admit(self, topic_name: str, size: int) -> bool:
        """On paho's thread, before the payload is read: False drops the message unread."""
        sender = _share_of(topic_name)
        if (
            sender is not None
            and self._admission is not None
            and not self._admission.admit(
                sender,
                size,
                time.monotonic(),
                state=topic_name.endswith("/" + topics.Channel.STATE),
            )
        ):
            self._drop(sender, self.throttled, "over its rate budget")
            return False
        if sender is not None:
            with self._held_lock:
                # the share protects other halls: a gateway alone (say, draining a backlog
                # and resending what a slow ingest has not acknowledged yet) is not cut
                others = len(self._held) - (sender in self._held) > 0
                over = others and self._held[sender] >= self._per_gateway
                if not over:
                    self._held[sender] += 1
            if over:
                self._drop(sender, self.shed, "over its share of receive slots")
                return False
        return True  # never blocks: paho's thread also writes our acks to the gateways

    def _hand_over(self, message: Message) -> None:
        """On the loop: one admitted message waits for its turn in a group; its PUBACK goes
        now, or once enough of what waits is committed (in order of arrival)."""
        self.receive(Incoming(message.topic, message.payload, message.received))
        self.pending += 1
        self.pending_bytes += len(message.payload)
        if self._unacked or not self._room():
            self._unacked.append(message)
        else:
            self._mqtt.ack(message)

    def _drop(self, sender: str, counter: Counter[str], why: str) -> None:
        counter[sender] += 1
        now = time.monotonic()
        if now - self._shed_logged >= SHED_LOG_INTERVAL_S:
            self._shed_logged = now
            log.warning(
                "central: %s sends faster than ingest takes it; %d of its messages "
                "dropped unread %s so far (its gateway sends them again)",
                sender,
                counter[sender],
                why,
            )

    def dropped(self) -> dict[str, tuple[int, int]]:
        """Per sender (hall/gateway): messages dropped (over its rate budget, over its share
        of slots) since the process started."""
        throttled, shed = dict(self.throttled), dict(self.shed)  # copies: paho's thread adds
        return {
            sender: (throttled.get(sender, 0), shed.get(sender, 0))
            for sender in throttled.keys() | shed.keys()
        }


def _share_of(topic_name: str) -> str | None:
    """Whose share of the slots a message uses; None for a command result, which a gateway
    sends only once and so must never be dropped (it is small and answers our own command)."""
    if topic_name.endswith("/" + topics.Channel.RESULT):
        return None
    return sender_of(topic_name)
