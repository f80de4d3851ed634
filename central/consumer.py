"""Central's MQTT side: one paho client per aggregator process, in a shared-subscription group.

paho runs in its own thread; messages are handed to asyncio. A bounded semaphore blocks paho's
thread when ``max_pending`` messages wait for their commit, which pushes back through TCP to the
broker instead of growing memory without bound. Messages lost in a crash are not our problem to
recover: the gateway resends everything central has not acknowledged.

A process with a configured ``broker.instance`` keeps a persistent session (fixed client id,
``clean_session=False``): what gateways publish while it reconnects or restarts, command
results above all (a gateway sends each once), is queued by the broker and delivered when it is
back. Without a configured instance the client id changes with every process (``p<pid>``), so
the session is clean: a persistent one would keep taking its share of the stream for days.
The connection's state is the ``mqtt.consumer`` record in ``/healthz``.

Groups for ingest are taken from the received messages in turns, one gateway after another
(each gateway's own messages in order), and bounded in bytes: a gateway with a backlog of large
or costly messages does not put them all ahead of another hall's next batch.

One gateway may hold at most ``per_gateway`` of those slots: what it sends beyond them is
dropped unread (not acknowledged, so a real gateway sends it again), which keeps a flooding
gateway from filling the slots that every other hall's messages need. A gateway's uplink keeps
far fewer batches in flight than that.

Before any of that, each gateway's messages pass its rate budget (central/admission.py), checked
on paho's thread before anything is read: under contention a flooding gateway's messages beyond
it are dropped at the cost of a few dict lookups, so the CPU that parsing them would take stays
with the other halls. Both kinds of drop are counted per gateway (``shed``, ``throttled``),
logged at most every ``SHED_LOG_INTERVAL_S`` and raised by the aggregator as a gateway alarm.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections import Counter, deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.admission import Admission
from central.config import BrokerConfig
from central.ingest import Incoming
from hallkit.clock import utc_now
from hallkit.supervise import TaskRecord, TaskState
from protocols import topics

log = logging.getLogger(__name__)

GROUP_BYTES = 2 * 1024 * 1024  # a group's payloads; bounds how long one transaction takes
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
    ) -> None:
        self.broker = broker
        self.record = record or TaskRecord("mqtt.consumer", state=TaskState.RESTARTING)
        self.record.state = TaskState.RESTARTING  # until the first connection
        self._stopping = False
        self.queue: asyncio.Queue[Incoming] = asyncio.Queue()
        self.connected = asyncio.Event()
        self._slots = threading.BoundedSemaphore(max_pending)
        self._per_gateway = min(per_gateway, max_pending)
        self._held: Counter[str] = Counter()  # slots held per gateway (paho's thread and ours)
        self._held_lock = threading.Lock()
        self.shed: Counter[str] = Counter()  # messages dropped over a gateway's share
        self.throttled: Counter[str] = Counter()  # messages dropped over its rate budget
        self._admission = admission
        self._waiting: dict[str, deque[Incoming]] = {}  # received, not yet in a group
        self._shed_logged = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{self.broker.group}-{self.broker.instance}",
            clean_session="instance" not in self.broker.model_fields_set,
            protocol=mqtt.MQTTv311,
        )
        client.suppress_exceptions = True  # a callback's bug is logged, never ends the thread
        client.enable_logger(log.getChild("paho"))
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        if self.broker.tls is not None:
            client.tls_set(
                ca_certs=str(self.broker.tls.ca),
                certfile=str(self.broker.tls.cert),
                keyfile=str(self.broker.tls.key),
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        self._client = client
        client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        client.loop_start()

    async def stop(self) -> None:
        self.record.state = TaskState.STOPPED
        if self._client is not None:
            # DISCONNECT goes out before the acknowledgement of a message still waiting for a
            # slot: never handed to ingest, it stays in the broker's session for next time
            self._client.disconnect()
        self._stopping = True  # frees paho's thread if it waits for a slot
        if self._client is not None:
            self._client.loop_stop()

    async def next_group(self, max_group: int, max_bytes: int = GROUP_BYTES) -> list[Incoming]:
        """The next messages to ingest together: gateways take turns, one message each."""
        if not self._waiting:
            self._wait(await self.queue.get())
        while not self.queue.empty():
            self._wait(self.queue.get_nowait())
        group: list[Incoming] = []
        size = 0
        while self._waiting and len(group) < max_group and size < max_bytes:
            for sender in list(self._waiting):
                backlog = self._waiting[sender]
                msg = backlog.popleft()
                if not backlog:
                    del self._waiting[sender]
                group.append(msg)
                size += len(msg.payload)
                if len(group) >= max_group or size >= max_bytes:
                    break
        return group

    def _wait(self, msg: Incoming) -> None:
        self._waiting.setdefault(_sender(msg.topic), deque()).append(msg)

    def done(self, message: Incoming) -> None:
        """One received message is committed (or quarantined); free its slot."""
        sender = _share_of(message.topic)
        if sender is not None:
            with self._held_lock:
                self._held[sender] -= 1
                if self._held[sender] <= 0:
                    del self._held[sender]
        self._slots.release()

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        assert self._client is not None
        return self._client.publish(topic, payload, qos=1)

    def _paho_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("central: broker refused the connection: %s", reason)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._connected, False, f"refused: {reason}")
            return
        group = self.broker.group
        client.subscribe(
            [
                (topics.shared(group, topics.subscription(topics.Channel.EVENTS)), 1),
                (topics.shared(group, topics.subscription(topics.Channel.STATE)), 1),
                (topics.shared(group, topics.subscription(topics.Channel.RESULT)), 1),
                (topics.shared(group, topics.subscription(topics.Channel.EVIDENCE)), 1),
            ]
        )
        log.info(
            "central: connected to %s:%s as %s-%s",
            self.broker.host,
            self.broker.port,
            group,
            self.broker.instance,
        )
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected, True, "")

    def _paho_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("central: disconnected from broker (%s)", reason)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected, False, str(reason))

    def _connected(self, up: bool, reason: str) -> None:
        if up:
            self.connected.set()
            self.record.state = TaskState.RUNNING
            return
        self.connected.clear()
        if not self._stopping:  # paho reconnects by itself; counted like a restart
            self.record.failed_with(f"disconnected from the broker: {reason}")
            self.record.state = TaskState.RESTARTING
            self.record.restarts += 1

    def _paho_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        topic_name = message.topic
        sender = _share_of(topic_name)
        if (
            sender is not None
            and self._admission is not None
            and not self._admission.admit(
                sender,
                len(message.payload),
                time.monotonic(),
                state=topic_name.endswith("/" + topics.Channel.STATE),
            )
        ):
            self._drop(sender, self.throttled, "over its rate budget")
            return
        if sender is not None:
            with self._held_lock:
                over = self._held[sender] >= self._per_gateway
                if not over:
                    self._held[sender] += 1
            if over:
                self._drop(sender, self.shed, "over its share of receive slots")
                return
        # back-pressure: blocks paho's thread, not the event loop (and never past a stop)
        while not self._slots.acquire(timeout=0.5):
            if self._stopping:
                if sender is not None:
                    with self._held_lock:
                        self._held[sender] -= 1
                return
        incoming = Incoming(topic_name, bytes(message.payload), utc_now())
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.queue.put_nowait, incoming)

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


def _sender(topic_name: str) -> str:
    """The hall/gateway part of a topic: whose turn a message waits for."""
    parts = topic_name.split("/", 4)
    return "/".join(parts[2:4]) if len(parts) == 5 else ""


def _share_of(topic_name: str) -> str | None:
    """Whose share of the slots a message uses; None for a command result, which a gateway
    sends only once and so must never be dropped (it is small and answers our own command)."""
    if topic_name.endswith("/" + topics.Channel.RESULT):
        return None
    return _sender(topic_name)
