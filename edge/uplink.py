"""The uplink: publishes the journal to central, in order, in batches, at QoS 1.

A broker PUBACK proves nothing (Mosquitto drops queued QoS 1 messages silently past
``max_queued_messages`` and loses its queue on ``kill -9``), so the only thing that lets the
journal trim is central's own acknowledgement, sent after its database commit. Everything
published and not acknowledged is published again when no ack at all was heard for
``ack_timeout_s`` (longer after repeated stalls); after every
reconnect the uplink starts over from the last acknowledgement. Duplicates are harmless:
central keys events by (gateway, seq). Those rules are the send window (``edge/sendwindow.py``,
no I/O); this module only carries its decisions out.

The broker connection is the shared kit's paho wrapper (``hallkit/mqtt.py``): everything paho
reports reaches this module on the asyncio loop, so the gateway never sees paho's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError

from edge.clock import Clock
from edge.config import BrokerConfig, UplinkConfig
from edge.drainrate import DrainRate
from edge.journal import Journal, Rebase
from edge.sendwindow import SendRange, SendWindow, WindowLimits
from hallkit.clock import utc_now
from hallkit.mqtt import Acks, ClientOptions, Connection, Message, MqttClient, Will
from hallkit.supervise import Supervisor
from protocols import topics
from protocols.commands import CommandResult
from protocols.envelope import Ack, GatewayState, TaskStatus, encode, encode_batch
from protocols.strict import json_safe

log = logging.getLogger(__name__)

SOFTWARE = "hallwatch-edge/0.1"
SEND_TASK, STATE_TASK = "uplink.send", "uplink.state"

CommandHandler = Callable[[bytes], Coroutine[Any, Any, None]]  # run as a task of its own
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
        # no ack since this connection began: reported once per connection when a resend is due
        self._acked_since_connect = False
        self._silence_reported = False
        self.window = SendWindow(
            WindowLimits(
                window_events=settings.window_events,
                batch_events=settings.batch_events,
                batch_bytes=settings.batch_bytes,
                ack_timeout_s=settings.ack_timeout_s,
                live_lag_events=settings.live_lag_events,
                live_events=settings.live_events,
                drain_window_events=settings.drain_window_events,
                # fresh events on the channel central reads ahead of every backlog
                live_channel=settings.live_channel,
            ),
            time.monotonic(),
        )
        self.drain = DrainRate()  # how fast central acknowledges: the hall page's 补传 rate
        self._wake = asyncio.Event()
        self._unsubscribe: Callable[[], None] = lambda: None  # from the journal, once started
        self._client: MqttClient | None = None
        self._topic_events = topics.topic(hall, gateway, topics.Channel.EVENTS)
        # fresh events (a lane's, and every batch once history is in) on a channel of their
        # own, read ahead of every backlog
        self._topic_live = (
            topics.topic(hall, gateway, topics.Channel.LIVE)
            if settings.live_channel
            else self._topic_events
        )
        self._topic_state = topics.topic(hall, gateway, topics.Channel.STATE)
        self._topic_ack = topics.topic(hall, gateway, topics.Channel.ACK)
        self._topic_cmd = topics.topic(hall, gateway, topics.Channel.CMD)
        self._topic_result = topics.topic(hall, gateway, topics.Channel.RESULT)
        self._topic_evidence = topics.topic(hall, gateway, topics.Channel.EVIDENCE)
        self._topic_receipt = topics.topic(hall, gateway, topics.Channel.RECEIPT)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._unsubscribe = self.journal.subscribe(lambda _committed: self._wake.set())
        self.journal.rebase_listeners.append(self._on_rebase)
        client = MqttClient(
            self.broker,
            ClientOptions(
                client_id=self.gateway,
                clean_session=False,  # commands sent while we were away are kept for us
                subscriptions=(
                    (self._topic_ack, 1),
                    (self._topic_cmd, 1),
                    (self._topic_receipt, 1),
                ),
                # A command is acknowledged to the broker only once it is handed to on_command:
                # without a handler (the self-test) it stays queued for the gateway service.
                acks=Acks.ON_ACCEPT,
                will=Will(self._topic_state, self._state(online=False)),
                max_inflight=20,  # docs/field-notes.md#mosquitto: more made paho slower
                logger=log.getChild("paho"),
            ),
            on_connection=self._on_connection,
            receive=self._accept,
            deliver=self._on_message,
        )
        self._client = client
        # paho keeps retrying in its thread while the broker is down, so the gateway journals
        # from its first event whatever the network does.
        await client.start()
        self.supervisor.spawn(SEND_TASK, self._send_loop)
        self.supervisor.spawn(STATE_TASK, self._state_loop)

    async def stop(self) -> None:
        for name in (SEND_TASK, STATE_TASK):
            await self.supervisor.cancel(name)
        client = self._client
        if client is not None:
            if self.connected:
                # a clean disconnect suppresses the Last Will, so say goodbye ourselves
                goodbye = client.publish(self._topic_state, self._state(online=False), retain=True)
                await goodbye.wait(2.0)
            client.stop()
        self._unsubscribe()
        with contextlib.suppress(ValueError):
            self.journal.rebase_listeners.remove(self._on_rebase)

    def _accept(self, topic_name: str, _size: int) -> bool:
        """On paho's thread: a command without a handler is not ours to take; the broker
        delivers it again to the service."""
        return not (topic_name == self._topic_cmd and self.on_command is None)

    # -- the connection --------------------------------------------------------------------

    def _on_connection(self, change: Connection) -> None:
        if change.refused:
            self.last_error = f"broker refused the connection: {change.reason}"
            log.error("uplink: %s", self.last_error)
        elif change.up:
            self._on_connect()
        else:
            self._on_disconnect(change.reason)

    def _on_connect(self) -> None:
        assert self._client is not None
        self.connected = True
        self.last_error = None
        self._acked_since_connect = self._silence_reported = False
        self._client.publish(self._topic_state, self._state(online=True), retain=True)
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
        self.window.on_disconnect(time.monotonic())
        self._wake.set()

    def _on_message(self, message: Message) -> None:
        topic_name, payload = message.topic, message.payload
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
        self._acked_since_connect = True
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
            self.drain.record(time.monotonic(), decision.mark_acked)
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
        return self._client.publish(self._topic_result, encode(result)).queued

    def publish_evidence(self, payload: bytes) -> bool:
        """One evidence upload (protocols/evidence.py), QoS 1; False when not sent now."""
        if self._client is None or not self.connected:
            return False
        return self._client.publish(self._topic_evidence, payload).sent

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
                    self._report_silence()
                    log.warning(
                        "uplink: no acknowledgement heard; resending from seq %d "
                        "(the next stall waits %.0f s)",
                        resend.first,
                        self.window.stall_timeout_s,
                    )
                    continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    def _report_silence(self) -> None:
        """The broker acknowledged this connection's publishes (PUBACK) and central nothing.
        On MQTT 3.1.1 a broker that drops them (its ACL, a tier bridge that does not carry
        this hall, a tier above that refuses the bridge) still answers PUBACK: say so once."""
        if self._acked_since_connect or self._silence_reported:
            return
        self._silence_reported = True
        log.error(
            "uplink: nothing acknowledged since connecting to %s:%s: central is down or "
            "behind, or the broker accepts this gateway's events and drops them (its ACL "
            "for %s, or a tier bridge that does not carry hall %s up); resending until "
            "central answers",
            self.broker.host,
            self.broker.port,
            topics.topic(self.hall, self.gateway, topics.Channel.EVENTS),
            self.hall,
        )

    async def _publish(self, batch: SendRange) -> bool:
        epoch = self.journal.epoch
        rows = await self.journal.read_from(
            batch.first, max_events=batch.max_events, max_bytes=batch.max_bytes
        )
        if not rows or self.journal.epoch != epoch:  # renumbered while reading
            return False
        # a live batch reads events just journaled: only the drain can meet trimmed ones
        lost_from = None if batch.live else SendWindow.lost_from(batch.first, rows[0][0])
        payload = encode_batch(
            self.hall,
            self.gateway,
            self.clock.boot_id,
            [doc for _, doc in rows],
            lost_from=lost_from,
            epoch=epoch,
        )
        assert self._client is not None
        where = self._topic_live if batch.live or batch.fresh else self._topic_events
        if not self._client.publish(where, payload).sent:
            return False
        self.window.on_published(
            rows[-1][0], acked=self.acked, now=time.monotonic(), live=batch.live
        )
        return True

    async def _state_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_interval_s)
            if self.connected and self._client is not None:
                self._client.publish(self._topic_state, self._state(online=True), retain=True)

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
                tasks={
                    name: TaskStatus.model_validate(task)
                    for name, task in self.supervisor.status().items()
                }
                if online
                else {},
            )
        )
