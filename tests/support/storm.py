"""A reconnect storm over MQTT/TLS: simulated gateways holding an outage's backlog, logged in
by their certificates, all reconnecting at once; each reconnects again when its broker
connection drops (a node killed under it), as a real gateway does.

The gateways are the storm bench's (``SimGateway``: the real send window with the uplink's
default limits, the real envelope, central's real acks; the journal in memory), driven from one
asyncio loop. TLS adds what the plain driver does not need: decrypted bytes the SSL object
holds beyond what one ``loop_read`` took are read at once (the socket itself has nothing left
to wake the loop), and a connection that drops is opened again."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt

from protocols import topics
from tests.bench.test_province_bench import TICK_S, Driver, Figures, SimGateway

RECONNECT_EVERY_S = 0.5
OPENS_PER_TICK = 10  # each a blocking TCP and TLS handshake


class TlsGateway(SimGateway):
    """One simulated gateway with its certificate; a dropped connection is noted for the
    storm to open again."""

    def __init__(
        self,
        hall: str,
        gateway: str,
        tls: dict[str, str],
        figures: Figures,
        now: float,
        busy: set[SimGateway],
    ) -> None:
        super().__init__(hall, gateway, figures, now, busy)
        self.client.tls_set(
            ca_certs=tls["ca"],
            certfile=tls["cert"],
            keyfile=tls["key"],
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        self.client.on_disconnect = self._dropped
        self.drops = 0
        self.retry_at = 0.0
        self.port: int | None = None  # its own broker (a county's), else the storm's
        self.backlog = 0  # the outage's events: journaled before the storm
        self.live_produced: dict[int, float] = {}  # seq → wall clock, pressed during the storm
        self.pressed_offline: set[int] = set()  # pressed before it reconnected: history
        self.live_sent: dict[int, float] = {}  # seq → wall clock, first published

    def press(self) -> None:
        """A live event: journaled now, its wall-clock time kept to measure its way."""
        self.produce(time.monotonic())  # above the backlog's seqs: that tells them apart
        self.live_produced[self.head] = time.time()
        if not self.connected:
            self.pressed_offline.add(self.head)

    def sent(self, first: int, last: int) -> None:
        now = time.time()
        for seq in range(max(first, self.backlog + 1), last + 1):
            self.live_sent.setdefault(seq, now)

    def _dropped(self, *_: Any) -> None:
        self.connected = False
        self.window.on_disconnect(time.monotonic())
        self.drops += 1
        self.retry_at = time.monotonic() + RECONNECT_EVERY_S

    def open(self, port: int) -> bool:
        """Connect (the first time) or reconnect; False when no node answered."""
        try:
            if self.client.is_connected() or self.client.socket() is not None:
                return True
            if self.drops == 0 and self.retry_at == 0.0:
                self.client.connect("127.0.0.1", self.port or port, keepalive=30)
            else:
                self.client.reconnect()
        except (OSError, ssl.SSLError, ValueError):
            self.retry_at = time.monotonic() + RECONNECT_EVERY_S
            return False
        self.retry_at = float("inf")  # until the next drop
        return True


class TlsDriver(Driver):
    """Many paho clients on one asyncio loop over TLS: the bench's ``Driver``, reading at once
    what the SSL object holds decrypted beyond one ``loop_read``."""

    def attach(self, client: mqtt.Client) -> None:
        super().attach(client)

        def readable(c: mqtt.Client = client) -> None:
            c.loop_read()
            sock = c.socket()
            while isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
                if c.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    break
                sock = c.socket()

        def opened(c: mqtt.Client, _u: Any, sock: Any) -> None:
            self.loop.add_reader(sock, readable)

        client.on_socket_open = opened


@dataclass
class StormResult:
    gateways: int
    produced: int
    connected_s: float | None = None  # every gateway connected once
    acked_s: float | None = None  # every gateway holds its final ack
    published: int = 0
    resends: int = 0
    drops: int = 0
    unacked: dict[str, int] = field(default_factory=dict)  # gateway → events not acknowledged

    @property
    def published_over_produced(self) -> float:
        return self.published / max(self.produced, 1)


async def open_sessions(sims: list[TlsGateway], port: int, limit_s: float) -> float:
    """Each gateway connects once and leaves (its broker session, a durable queue, made), as
    before an outage: the storm is a reconnect. Returns the seconds it took."""
    loop = asyncio.get_running_loop()
    driver = TlsDriver(loop)
    start = time.monotonic()
    for sim in sims:
        driver.attach(sim.client)
    try:  # nothing sent: the backlog waits for the storm
        while time.monotonic() - start < limit_s and not all(s.connected for s in sims):
            now = time.monotonic()
            opening = [s for s in sims if not s.connected and now >= s.retry_at]
            for sim in opening[:OPENS_PER_TICK]:
                sim.open(port)
                await asyncio.sleep(0)
            await asyncio.sleep(TICK_S)
        took = time.monotonic() - start
        if not all(s.connected for s in sims):
            raise TimeoutError(f"sessions not opened within {limit_s} s")
    finally:
        for sim in sims:
            with contextlib.suppress(OSError, ssl.SSLError):
                sim.client.disconnect()
                sim.client.loop_write()
        for sim in sims:
            sim.connected = False
            sim.drops, sim.retry_at = 0, 0.0
    return took


def make_gateways(
    pairs: list[tuple[str, str]],
    tls: dict[str, dict[str, str]],
    backlog: int,
    figures: Figures,
    *,
    live_channel: bool = False,
    lane: tuple[int, int, int] | None = None,
) -> list[TlsGateway]:
    """The gateways, each with ``backlog`` events in its journal (an outage's); with
    ``live_channel`` their live lanes publish on ``hw/v1/H/G/live`` (``uplink.live_channel``);
    ``lane`` sets (``live_lag_events``, ``drain_window_events``, ``batch_events``) instead of
    the defaults."""
    now = time.monotonic()
    busy: set[SimGateway] = set()
    sims = [TlsGateway(h, g, tls[g], figures, now, busy) for h, g in pairs]
    for sim in sims:
        for _ in range(backlog):
            sim.produce(now)
        sim.backlog = backlog
        if live_channel:  # as the uplink does with uplink.live_channel
            sim.topic_live = topics.topic(sim.hall, sim.gateway, topics.Channel.LIVE)
            sim.window.limits = replace(sim.window.limits, live_channel=True)
        if lane is not None:
            sim.window.limits = replace(
                sim.window.limits,
                live_lag_events=lane[0],
                drain_window_events=lane[1],
                batch_events=lane[2],
            )
    return sims


async def storm(
    sims: list[TlsGateway], figures: Figures, port: int, limit_s: float, live_rate: float = 0.0
) -> StormResult:
    """Every gateway connects at once through ``port`` and sends its backlog; returns when all
    hold their final ack or after ``limit_s``. Until every backlog is acknowledged the halls
    press ``live_rate`` live events a second in all, each at a gateway drawn at random."""
    loop = asyncio.get_running_loop()
    driver = TlsDriver(loop)
    for sim in sims:
        driver.attach(sim.client)
    busy = sims[0].busy if sims else set()
    result = StormResult(len(sims), sum(s.head for s in sims))
    start = last_misc = next_press = time.monotonic()
    try:
        while (now := time.monotonic()) - start < limit_s:
            draining = any(s.acked < s.backlog for s in sims)
            while live_rate > 0 and draining and now >= next_press:
                random.choice(sims).press()
                next_press += 1.0 / live_rate
            opening = [s for s in sims if not s.connected and now >= s.retry_at]
            for sim in opening[:OPENS_PER_TICK]:  # the others send in between
                sim.open(port)
                await asyncio.sleep(0)  # a handshake's reply is read by the loop
            if result.connected_s is None and all(s.drops or s.connected for s in sims):
                result.connected_s = time.monotonic() - start
            for owing in list(busy):
                owing.send(now)
            if now - last_misc >= 1.0:
                last_misc = now
                for sim in sims:
                    if sim.connected:
                        sim.client.loop_misc()
                        sim.state_due(now)
            if all(s.acked >= s.head for s in sims):
                result.acked_s = time.monotonic() - start
                break
            await asyncio.sleep(TICK_S)
    finally:
        result.drops = sum(s.drops for s in sims)
        result.produced = sum(s.head for s in sims)  # the live presses too
        for sim in sims:
            with contextlib.suppress(OSError, ssl.SSLError):
                sim.client.disconnect()
                sim.client.loop_write()
    result.published, result.resends = figures.published, figures.resends
    result.unacked = {s.gateway: s.head - s.acked for s in sims if s.acked < s.head}
    return result
