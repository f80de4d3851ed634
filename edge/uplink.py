"""The uplink: publishes the journal to central, in order, in batches, at QoS 1.

A broker PUBACK proves nothing (Mosquitto drops queued QoS 1 messages silently past
``max_queued_messages`` and loses its queue on ``kill -9``), so the only thing that lets the
journal trim is central's own acknowledgement, sent after its database commit. Everything
published and not acknowledged within ``ack_timeout_s`` is published again; after every
reconnect the uplink starts over from the last acknowledgement. Duplicates are harmless:
central keys events by (gateway, seq). Those rules are the send window (``edge/sendwindow.py``,
no I/O); this module only carries its decisions out.

paho-mqtt runs its network loop in its own thread; every callback is handed to the asyncio
loop, so the rest of the gateway never sees paho's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edge.clock import Clock
from edge.config import BrokerConfig, UplinkConfig
from edge.journal import Journal, Rebase
from edge.sendwindow import SendRange, SendWindow, WindowLimits
from hallkit.clock import utc_now
from hallkit.supervise import Supervisor
from protocols import topics
from protocols.commands import CommandResult
from protocols.envelope import Ack, GatewayState, encode, encode_batch
from protocols.strict import json_safe

log = logging.getLogger(__name__)

SOFTWARE = "hallwatch-edge/0.1"
SEND_TASK, STATE_TASK = "uplink.send", "uplink.state"

CommandHandler = Callable[[bytes], Awaitable[None]]
HealthProvider = Callable[[], dict[str, Any]]


class Uplink:
    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        hall: str,
        gateway: str,
        broker: BrokerConfig,
        settings: UplinkConfig,
        *,
        on_command: CommandHandler | None = None,
        health: HealthProvider | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.hall = hall
        self.gateway = gateway
        self.broker = broker
        self.settings = settings
        self.on_command = on_command
        self.on_receipt: Callable[[bytes], None] | None = None  # evidence upload receipts
        self.health = health or dict
        # the send and state loops run under the gateway's supervisor (their own otherwise)
        self.supervisor = supervisor or Supervisor()
        self.connected = False
        self.last_error: str | None = None
        self.window = SendWindow(
            WindowLimits(
                window_events=settings.window_events,
                batch_events=settings.batch_events,
                batch_bytes=settings.batch_bytes,
                ack_timeout_s=settings.ack_timeout_s,
            ),
            time.monotonic(),
        )
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._topic_events = topics.topic(hall, gateway, topics.Channel.EVENTS)
        self._topic_state = topics.topic(hall, gateway, topics.Channel.STATE)
        self._topic_ack = topics.topic(hall, gateway, topics.Channel.ACK)
        self._topic_cmd = topics.topic(hall, gateway, topics.Channel.CMD)
        self._topic_result = topics.topic(hall, gateway, topics.Channel.RESULT)
        self._topic_evidence = topics.topic(hall, gateway, topics.Channel.EVIDENCE)
        self._topic_receipt = topics.topic(hall, gateway, topics.Channel.RECEIPT)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.journal.listeners.append(self._wake.set)
        self.journal.rebase_listeners.append(self._on_rebase)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.gateway,
            clean_session=False,  # commands sent while we were away are kept for us
            protocol=mqtt.MQTTv311,
            # A command is acknowledged to the broker only once it is handed to on_command:
            # without a handler (the self-test) it stays queued for the gateway service.
            manual_ack=True,
        )
        client.max_inflight_messages_set(20)  # docs/field-notes.md#mosquitto: more made paho slower
        client.suppress_exceptions = True  # a callback's bug is logged, never ends the thread
        client.enable_logger(log.getChild("paho"))
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.will_set(self._topic_state, self._state(online=False), qos=1, retain=True)
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
        # connect_async + loop_start: paho keeps retrying in its thread while the broker is
        # down, so the gateway journals from its first event whatever the network does.
        client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        client.loop_start()
        self.supervisor.spawn(SEND_TASK, self._send_loop)
        self.supervisor.spawn(STATE_TASK, self._state_loop)

    async def stop(self) -> None:
        for name in (SEND_TASK, STATE_TASK):
            await self.supervisor.cancel(name)
        client = self._client
        if client is not None:
            if self.connected:
                # a clean disconnect suppresses the Last Will, so say goodbye ourselves
                info = client.publish(self._topic_state, self._state(online=False), 1, True)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(info.wait_for_publish, 2.0)
            client.disconnect()
            client.loop_stop()
        with contextlib.suppress(ValueError):
            self.journal.listeners.remove(self._wake.set)
        with contextlib.suppress(ValueError):
            self.journal.rebase_listeners.remove(self._on_rebase)

    # -- paho callbacks (paho's thread) → asyncio ------------------------------------------

    def _paho_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_connect, not reason.is_failure, str(reason))

    def _paho_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_disconnect, str(reason))

    def _paho_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        if message.topic == self._topic_cmd and self.on_command is None:
            return  # not ours to take: the broker delivers it again to the service
        client.ack(message.mid, message.qos)
        self._loop.call_soon_threadsafe(self._on_message, message.topic, message.payload)

    # -- asyncio side ----------------------------------------------------------------------

    def _on_connect(self, ok: bool, reason: str) -> None:
        if not ok:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("uplink: %s", self.last_error)
            return
        assert self._client is not None
        self.connected = True
        self.last_error = None
        self._client.subscribe(
            [(self._topic_ack, 1), (self._topic_cmd, 1), (self._topic_receipt, 1)]
        )
        self._client.publish(self._topic_state, self._state(online=True), qos=1, retain=True)
        first = self.window.on_connect(self.journal.acked_seq, time.monotonic())
        log.info(
            "uplink: connected to %s:%s; resending from seq %d",
            self.broker.host,
            self.broker.port,
            first,
        )
        self._wake.set()

    def _on_disconnect(self, reason: str) -> None:
        if self.connected:
            log.warning("uplink: disconnected (%s); journaling continues", reason)
        self.connected = False
        self.last_error = f"disconnected: {reason}"
        self._wake.set()

    def _on_message(self, topic_name: str, payload: bytes) -> None:
        if topic_name == self._topic_ack:
            self._on_ack(payload)
        elif topic_name == self._topic_cmd and self.on_command is not None:
            asyncio.create_task(self.on_command(payload), name="uplink-command")  # noqa: RUF006
        elif topic_name == self._topic_receipt and self.on_receipt is not None:
            self.on_receipt(payload)

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = Ack.model_validate_json(payload)
        except ValidationError as exc:
            log.warning("uplink: ignoring malformed ack: %s", exc.errors()[0]["msg"])
            return
        if ack.hall != self.hall or ack.gateway != self.gateway:
            log.warning("uplink: ignoring ack addressed to %s/%s", ack.hall, ack.gateway)
            return
        decision = self.window.on_ack(
            ack,
            journal_epoch=self.journal.epoch,
            acked=self.journal.acked_seq,
            now=time.monotonic(),
        )
        if decision.other_epoch:
            return  # it speaks for another journal epoch (one renumbered since)
        if decision.rebase_to is not None:
            assert ack.epoch is not None and decision.mark_acked is not None
            log.error(
                "uplink: central refuses this journal's numbering above seq %d; "
                "renumbering from %d",
                decision.mark_acked,
                decision.rebase_to,
            )
            self.journal.mark_acked(decision.mark_acked)
            self.journal.request_rebase(Rebase(ack.epoch, decision.mark_acked, decision.rebase_to))
            return
        if decision.mark_acked is not None:
            self.journal.mark_acked(decision.mark_acked)
        if decision.replay_from is not None:
            log.info("uplink: central asks for everything again from seq %d", decision.replay_from)
        if decision.wake:
            self._wake.set()

    def _on_rebase(self, _first: int, _shift: int) -> None:
        # everything unacknowledged has new numbers: send it all again from the new start
        self.window.on_rebase(self.journal.acked_seq, time.monotonic())
        self._wake.set()

    def replay_from(self, seq: int) -> str:
        """Publish everything again from ``seq``, acknowledged or not (a remote command:
        central lost data, e.g. restored from a backup). Returns what will be sent."""
        replay = self.window.replay_from(
            seq, oldest=self.journal.oldest_seq, head=self.journal.head_seq, now=time.monotonic()
        )
        if replay.started:
            self._wake.set()
            log.info("uplink: replaying from seq %d on central's command", seq)
        return replay.report

    def publish_result(self, result: CommandResult) -> bool:
        """Answer a command on the result channel (QoS 1; paho resends after a reconnect)."""
        if self._client is None:
            return False
        info = self._client.publish(self._topic_result, encode(result), qos=1)
        return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def publish_evidence(self, payload: bytes) -> bool:
        """One evidence upload (protocols/evidence.py), QoS 1; False when not sent now."""
        if self._client is None or not self.connected:
            return False
        info = self._client.publish(self._topic_evidence, payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    @property
    def acked(self) -> int:
        return self.journal.acknowledged

    @property
    def published_batches(self) -> int:
        return self.window.published_batches

    @property
    def rewinds(self) -> int:
        return self.window.rewinds

    async def _send_loop(self) -> None:
        while True:
            if self.connected:
                batch = self.window.next_range(acked=self.acked, head=self.journal.head_seq)
                if batch is not None:
                    if await self._publish(batch):
                        continue
                elif resend := self.window.on_tick(acked=self.acked, now=time.monotonic()):
                    log.warning(
                        "uplink: no acknowledgement for %.0f s; resending from seq %d",
                        self.settings.ack_timeout_s,
                        resend.first,
                    )
                    continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def _publish(self, batch: SendRange) -> bool:
        epoch = self.journal.epoch
        rows = await self.journal.read_from(
            batch.first, max_events=batch.max_events, max_bytes=batch.max_bytes
        )
        if not rows or self.journal.epoch != epoch:  # renumbered while reading
            return False
        lost_from = SendWindow.lost_from(batch.first, rows[0][0])
        payload = encode_batch(
            self.hall,
            self.gateway,
            self.clock.boot_id,
            [doc for _, doc in rows],
            lost_from=lost_from,
            epoch=epoch,
        )
        assert self._client is not None
        info = self._client.publish(self._topic_events, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self.window.on_published(rows[-1][0], acked=self.acked, now=time.monotonic())
        return True

    async def _state_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_interval_s)
            if self.connected and self._client is not None:
                self._client.publish(self._topic_state, self._state(online=True), 1, True)

    def _state(self, *, online: bool) -> bytes:
        return encode(
            GatewayState(
                hall=self.hall,
                gateway=self.gateway,
                boot=self.clock.boot_id,
                online=online,
                utc=utc_now(),
                synced=self.clock.synchronised(),
                software=SOFTWARE,
                journal=self.journal.state(),
                health=json_safe(self.health()) if online else {},
                tasks=self.supervisor.status() if online else {},
            )
        )
