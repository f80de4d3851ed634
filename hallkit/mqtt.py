"""One paho-mqtt client for both sides: the gateway's uplink and self-test, central's consumer and
case feed.

paho runs its network loop in a thread of its own; everything it reports is handed to the
asyncio loop, so callers never see paho's threads, except through ``receive``: the one hook that
runs on paho's thread, before a message's payload is read, so that it may refuse the message
(dropped unread) or block (back-pressure through TCP to the broker).

What a caller gets:
- ``start()`` connects in the background and reconnects while the broker is away, after a
  randomised wait (``Backoff``: "full jitter", at most ``reconnect_delay[1]``, so a client is
  back within about a second of its broker, and two thousand gateways that lost it at the same
  instant come back spread over that second, not in one burst). paho's own reconnect delay has
  no jitter: it is set to zero and the wait happens in paho's thread, in the disconnect and
  connect-failure callbacks, before paho tries again (``retry=False``: one attempt that raises,
  for a self-test); TLS with a client certificate;
  the subscriptions in ``ClientOptions`` are made again on every connection;
- ``on_connection`` on the loop for every connection, refusal and disconnection;
- ``publish()`` and ``subscribe()`` with futures that resolve on the broker's PUBACK / SUBACK;
- messages as an async stream (``messages()``) or, with ``deliver``, one call each on the loop;
- acknowledgements to the broker on arrival, when ``receive`` accepts, or by the caller after
  its commit, or when the caller is ready for more (``Acks``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode as ReasonCode  # callers read SUBACK codes

from hallkit.clock import utc_now
from protocols.transport import BrokerEndpoint, TlsFiles

# (topic filter, QoS)
Subscription = tuple[str, int]


class Acks(Enum):
    """When a received QoS 1 message is acknowledged to the broker."""

    ON_ARRIVAL = "on_arrival"  # as paho reads it, whatever ``receive`` says
    ON_ACCEPT = "on_accept"  # when ``receive`` accepts it; a refused one stays with the broker
    BY_CALLER = "by_caller"  # by ``ack(message)``, e.g. after the caller's commit
    # refused by ``receive``: at once (dropped); accepted: by ``ack(message)`` when the caller
    # wants more. Until then the broker sends at most its in-flight limit of further messages:
    # back-pressure that never blocks paho's thread, so what the caller publishes goes out.
    PACED = "paced"


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class ClientOptions:
    client_id: str
    clean_session: bool = True  # False: the broker keeps subscriptions and QoS 1 messages
    subscriptions: tuple[Subscription, ...] = ()  # made again on every connection
    acks: Acks = Acks.ON_ARRIVAL
    will: Will | None = None
    max_inflight: int = 20
    reconnect_delay: tuple[float, float] = (0.25, 1.0)  # seconds, first and longest (jittered)
    retry: bool = True  # False: one connection attempt, which raises; no reconnects
    logger: logging.Logger | None = None  # paho's own log lines


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    mid: int
    received: datetime  # UTC, when ``receive`` let it through


@dataclass(frozen=True, slots=True)
class Connection:
    """A change of the connection, reported on the loop."""

    up: bool
    reason: str
    refused: bool = False  # the broker answered the CONNECT with a failure
    # up with subscriptions: resolves with the SUBACK's reason codes
    subscribed: asyncio.Future[list[ReasonCode]] | None = None


class Backoff:
    """Waits before reconnecting: attempt n after a loss waits a uniformly random time in
    ``[0, min(longest, first * 2**n)]`` ("full jitter"); a connection resets it."""

    def __init__(self, first: float, longest: float, rng: random.Random | None = None) -> None:
        self.first = first
        self.longest = longest
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.longest, self.first * 2 ** min(self.attempts, 30))
        self.attempts += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0


class TlsFilesUnusable(Exception):
    """The CA, certificate or key named in the configuration cannot be loaded."""


class Publication:
    """One QoS 1 publish: ``done`` resolves on the broker's PUBACK."""

    def __init__(self, info: mqtt.MQTTMessageInfo, done: asyncio.Future[None]) -> None:
        self.info = info
        self.done = done

    @property
    def sent(self) -> bool:
        """Handed to the connection now."""
        return self.info.rc == mqtt.MQTT_ERR_SUCCESS

    @property
    def queued(self) -> bool:
        """Sent now, or kept by paho and sent after the next connection."""
        return self.info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def is_published(self) -> bool:
        """PUBACK received (paho's answer; it raises when the send itself failed). ``done`` is
        asked first: paho runs its publish callback, which resolves it, before it marks the
        message published, so on the loop the future can be ahead of paho's flag."""
        if self.done.done() and not self.done.cancelled() and self.done.exception() is None:
            return True
        return self.info.is_published()

    async def wait(self, timeout: float) -> bool:
        """True once the broker acknowledged it; False when ``timeout`` passed first or the
        client stopped (the publish itself is never cancelled by waiting)."""
        await asyncio.wait({self.done}, timeout=timeout)
        return self.done.done() and not self.done.cancelled() and self.done.exception() is None


class MqttClient:
    """A paho client driven from asyncio; see the module's docstring."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        options: ClientOptions,
        *,
        on_connection: Callable[[Connection], None] | None = None,
        receive: Callable[[str, int], bool] | None = None,
        deliver: Callable[[Message], None] | None = None,
    ) -> None:
        """``receive(topic, payload size)`` runs on paho's thread; it may block, and a message it
        refuses is dropped unread. ``deliver`` takes each accepted message on the loop, in
        order; without it they wait in ``messages()``."""
        self.endpoint = endpoint
        self.options = options
        self.connected = False
        self._on_connection = on_connection
        self._receive = receive
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._deliver = deliver or self._inbox.put_nowait
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._disconnecting = False
        self._backoff = Backoff(*options.reconnect_delay)
        self._stopping = threading.Event()  # ends a reconnect wait in paho's thread
        self._publishing: dict[int, asyncio.Future[None]] = {}
        self._subscribing: dict[int, asyncio.Future[list[ReasonCode]]] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect. With ``retry`` paho keeps trying in its thread while the broker is away;
        without, one attempt raises OSError or ssl.SSLError. TlsFilesUnusable either way."""
        self._loop = asyncio.get_running_loop()
        o = self.options
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=o.client_id,
            clean_session=o.clean_session,
            protocol=mqtt.MQTTv311,
            manual_ack=o.acks is not Acks.ON_ARRIVAL,
            reconnect_on_failure=o.retry,
        )
        client.max_inflight_messages_set(o.max_inflight)
        client.max_queued_messages_set(0)
        client.suppress_exceptions = True  # a callback's bug is logged, never ends the thread
        if o.logger is not None:
            client.enable_logger(o.logger)
        client.reconnect_delay_set(min_delay=0, max_delay=0)  # the wait is ours: _reconnect_wait
        if o.will is not None:
            client.will_set(o.will.topic, o.will.payload, qos=o.will.qos, retain=o.will.retain)
        if self.endpoint.tls is not None:
            _use_tls(client, self.endpoint.tls)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_connect_fail = self._paho_connect_fail
        client.on_message = self._paho_message
        client.on_publish = self._paho_publish
        client.on_subscribe = self._paho_subscribe
        self._client = client
        self._disconnecting = False
        self._stopping.clear()
        self._backoff.reset()
        host, port, keepalive = self.endpoint.host, self.endpoint.port, self.endpoint.keepalive_s
        if o.retry:
            client.connect_async(host, port, keepalive=keepalive)
        else:
            await asyncio.to_thread(client.connect, host, port, keepalive)
        client.loop_start()

    def disconnect(self) -> None:
        """Send DISCONNECT (a clean one: the broker does not publish the will)."""
        if self._client is not None and not self._disconnecting:
            self._disconnecting = True
            self._client.disconnect()

    def stop(self) -> None:
        """Disconnect and end paho's thread (it blocks until the thread has ended); ``start``
        connects again with a new session."""
        self.disconnect()
        self._stopping.set()
        if self._client is not None:
            # kept: a late publish is answered as paho answers it, "not connected"
            self._client.loop_stop()
        self.connected = False
        pending: list[asyncio.Future[Any]] = [
            *self._publishing.values(),
            *self._subscribing.values(),
        ]
        self._publishing, self._subscribing = {}, {}
        if pending and self._loop is not None:  # stop() may run in a worker thread
            self._loop.call_soon_threadsafe(_cancel_all, pending)

    # -- sending ---------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Publication:
        """Publish (from the loop); while disconnected paho keeps a QoS 1 message and sends it
        after the next connection (``queued``)."""
        assert self._client is not None and self._loop is not None, "not started"
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        done: asyncio.Future[None] = self._loop.create_future()
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            previous = self._publishing.pop(info.mid, None)
            if previous is not None:
                previous.cancel()  # its mid came round again without a PUBACK
            self._publishing[info.mid] = done
        else:
            done.set_exception(ConnectionError(mqtt.error_string(info.rc)))
            done.exception()  # retrieved: nobody need await it
        return Publication(info, done)

    def subscribe(self, subscriptions: list[Subscription]) -> asyncio.Future[list[ReasonCode]]:
        """Subscribe now (from the loop); resolves with the SUBACK's reason codes."""
        assert self._client is not None and self._loop is not None, "not started"
        done: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        rc, mid = self._client.subscribe(subscriptions)
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            done.set_exception(ConnectionError(mqtt.error_string(rc)))
        else:
            self._subscribing[mid] = done
        return done

    def ack(self, message: Message) -> None:
        """Acknowledge a message to the broker (``Acks.BY_CALLER``)."""
        if self._client is not None:
            self._client.ack(message.mid, message.qos)

    # -- receiving -------------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[Message]:
        """The accepted messages, in order (without ``deliver``)."""
        while True:
            yield await self._inbox.get()

    # -- paho's thread → the loop ----------------------------------------------------------

    def _paho_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._to_loop(self._connection, Connection(False, str(reason), refused=True), None)
            return
        self._backoff.reset()
        mid = None
        if self.options.subscriptions:
            rc, mid = client.subscribe(list(self.options.subscriptions))
            if rc != mqtt.MQTT_ERR_SUCCESS:
                mid = None
        self._to_loop(self._connection, Connection(True, str(reason)), mid)

    def _paho_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._to_loop(self._connection, Connection(False, str(reason)), None)
        self._reconnect_wait()

    def _paho_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._reconnect_wait()

    def _reconnect_wait(self) -> None:
        """On paho's thread, right before it tries again: the jittered wait (not after a
        DISCONNECT of ours, nor when no reconnect follows)."""
        if self.options.retry and not self._disconnecting:
            self._stopping.wait(self._backoff.next_delay())

    def _paho_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._receive is not None and not self._receive(message.topic, len(message.payload)):
            if self.options.acks is Acks.PACED and self._client is not None:
                self._client.ack(message.mid, message.qos)  # dropped: the broker sends on
            return
        if self.options.acks is Acks.ON_ACCEPT:
            client.ack(message.mid, message.qos)
        accepted = Message(
            message.topic, bytes(message.payload), message.qos, message.mid, utc_now()
        )
        self._to_loop(self._deliver, accepted)

    def _paho_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._to_loop(self._published, mid)

    def _paho_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        self._to_loop(self._subscribed, mid, reasons)

    def _to_loop(self, callback: Callable[..., object], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(callback, *args)

    # -- the loop's side -------------------------------------------------------------------

    def _connection(self, change: Connection, subscribe_mid: int | None) -> None:
        self.connected = change.up
        if change.up and subscribe_mid is not None:
            assert self._loop is not None
            subscribed: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
            self._subscribing[subscribe_mid] = subscribed  # its SUBACK is handed over after this
            change = Connection(True, change.reason, subscribed=subscribed)
        if self._on_connection is not None:
            self._on_connection(change)

    def _published(self, mid: int) -> None:
        done = self._publishing.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(None)

    def _subscribed(self, mid: int, reasons: list[ReasonCode]) -> None:
        done = self._subscribing.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(list(reasons))


def _cancel_all(futures: list[asyncio.Future[Any]]) -> None:
    for future in futures:
        future.cancel()


def _use_tls(client: mqtt.Client, files: TlsFiles) -> None:
    try:
        client.tls_set(
            ca_certs=str(files.ca),
            certfile=str(files.cert),
            keyfile=str(files.key),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsFilesUnusable(str(exc)) from exc
