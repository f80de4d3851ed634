"""Steady office hours of a province (``./run.sh bench``): N simulated gateways against one
central on PostgreSQL and a private Mosquitto, at 60 events/s in all, then 600, each gateway
sending its state every 10 s. Prints ack p50/p99, stored against acknowledged, and published
÷ produced; asserts nothing about speed.

The load generator is faithful where it matters: every gateway has the real send window
(``edge.sendwindow.SendWindow`` with the uplink's default limits), its events are the real
envelope (``encode_event``/``encode_batch``, ``GatewayState``) and it reads central's real acks.
What it leaves out is the journal's disk: events wait in memory. All gateways are paho clients
in this one process, driven from one asyncio loop through ``loop_read``/``loop_write``/
``loop_misc`` (as aiomqtt does), so two thousand of them cost no thread each.

Environment: ``HALLWATCH_BENCH_GATEWAYS`` (default 2000), ``HALLWATCH_BENCH_PHASE_S`` (each
rate's duration, default 60), ``HALLWATCH_BENCH_RATES`` (default "60,600").
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.spine.registry import register
from central.store.db import make_engine
from central.store.migrate import upgrade
from central.store.schema import events, gateways
from edge.config import UplinkConfig
from edge.sendwindow import SendWindow, WindowLimits
from protocols import topics
from protocols.envelope import (
    Ack,
    EventRecord,
    GatewayState,
    encode,
    encode_batch,
    encode_event,
)
from tests.support import procs
from tests.support.broker import Broker

pytestmark = pytest.mark.bench

GATEWAYS = int(os.environ.get("HALLWATCH_BENCH_GATEWAYS", "2000"))
PHASE_S = float(os.environ.get("HALLWATCH_BENCH_PHASE_S", "60"))
RATES = [float(r) for r in os.environ.get("HALLWATCH_BENCH_RATES", "60,600").split(",")]
STATE_INTERVAL_S = 10.0
TICK_S = 0.05
BOOT = "cd" * 16
EPOCH = "0000b0b0"


@dataclass
class Figures:
    produced: int = 0
    published: int = 0  # events put in published batches, resends included
    resends: int = 0
    latencies: list[float] = field(default_factory=list)  # produce → ack, seconds


class SimGateway:
    """One hall's gateway: an in-memory journal, the real send window, a paho client."""

    def __init__(
        self, hall: str, gateway: str, figures: Figures, now: float, busy: set[SimGateway]
    ) -> None:
        self.hall, self.gateway, self.figures = hall, gateway, figures
        self.busy = busy  # the gateways owing events: only they need the sender's attention
        defaults = UplinkConfig()
        self.window = SendWindow(
            WindowLimits(
                window_events=defaults.window_events,
                batch_events=defaults.batch_events,
                batch_bytes=defaults.batch_bytes,
                ack_timeout_s=defaults.ack_timeout_s,
                live_lag_events=defaults.live_lag_events,
                live_events=defaults.live_events,
                drain_window_events=defaults.drain_window_events,
            ),
            now,
        )
        self.journal: dict[int, tuple[str, float]] = {}  # seq → (event JSON, produced at)
        self.head = 0
        self.acked = 0
        self.connected = False
        self.next_state = now + random.uniform(0, STATE_INTERVAL_S)
        self.topic_events = topics.topic(hall, gateway, topics.Channel.EVENTS)
        self.topic_live = self.topic_events  # the live lane's (uplink.live_channel off)
        self.topic_state = topics.topic(hall, gateway, topics.Channel.STATE)
        self.topic_ack = topics.topic(hall, gateway, topics.Channel.ACK)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=gateway, clean_session=False
        )
        self.client.max_inflight_messages_set(20)
        self.client.on_connect = self._connected
        self.client.on_message = self._message

    def _connected(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe(self.topic_ack, 1)
        self.connected = True
        self.window.on_connect(self.acked, time.monotonic())
        self.publish_state()

    def _message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        ack = Ack.model_validate_json(message.payload)
        now = time.monotonic()
        decision = self.window.on_ack(ack, journal_epoch=EPOCH, acked=self.acked, now=now)
        if decision.mark_acked is not None and decision.mark_acked > self.acked:
            for seq in range(self.acked + 1, decision.mark_acked + 1):
                _, produced = self.journal.pop(seq)
                self.figures.latencies.append(now - produced)
            self.acked = decision.mark_acked
            if self.acked >= self.head:
                self.busy.discard(self)

    def produce(self, now: float) -> None:
        seq = self.head + 1
        record = EventRecord(
            seq=seq,
            utc=datetime.now(UTC),
            mono_ns=time.monotonic_ns(),
            boot=BOOT,
            synced=True,
            kind="gen.sample",
            body={"n": seq, "run": "province"},
        )
        self.append(record, now)

    def append(self, record: EventRecord, now: float) -> None:
        """Journal an event the hall produced; its seq must be the next one."""
        assert record.seq == self.head + 1, (record.seq, self.head)
        self.head = record.seq
        self.journal[self.head] = (encode_event(record), now)
        self.figures.produced += 1
        self.busy.add(self)

    def publish_state(self) -> None:
        state = GatewayState(
            hall=self.hall,
            gateway=self.gateway,
            boot=BOOT,
            online=True,
            utc=datetime.now(UTC),
            synced=True,
            software="bench",
            health={"uplink": "ok", "evaluators": 9},
        )
        self.client.publish(self.topic_state, encode(state), qos=1, retain=True)

    def state_due(self, now: float) -> None:
        if self.connected and now >= self.next_state:
            self.next_state = now + STATE_INTERVAL_S
            self.publish_state()

    def sent(self, first: int, last: int) -> None:
        """Published ``first``–``last`` (a subclass times its presses' way)."""

    def send(self, now: float) -> None:
        if not self.connected:
            return
        while batch := self.window.next_range(acked=self.acked, head=self.head):
            last = min(self.head, batch.first + batch.max_events - 1)
            docs = [self.journal[s][0] for s in range(batch.first, last + 1)]
            payload = encode_batch(self.hall, self.gateway, BOOT, docs, epoch=EPOCH)
            topic = self.topic_live if batch.live or batch.fresh else self.topic_events
            if self.client.publish(topic, payload, qos=1).rc != 0:
                return
            self.window.on_published(last, acked=self.acked, now=now, live=batch.live)
            self.figures.published += len(docs)
            self.sent(batch.first, last)
        if self.window.on_tick(acked=self.acked, now=now) is not None:
            self.figures.resends += 1


class Driver:
    """Many paho clients on one asyncio loop: sockets watched by the loop, keepalives from a
    task (the aiomqtt pattern)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def attach(self, client: mqtt.Client) -> None:
        def opened(c: mqtt.Client, _u: Any, sock: Any) -> None:
            self.loop.add_reader(sock, c.loop_read)

        def closed(c: mqtt.Client, _u: Any, sock: Any) -> None:
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)

        def want_write(c: mqtt.Client, _u: Any, sock: Any) -> None:
            self.loop.add_writer(sock, c.loop_write)

        def done_write(c: mqtt.Client, _u: Any, sock: Any) -> None:
            self.loop.remove_writer(sock)

        client.on_socket_open = opened
        client.on_socket_close = closed
        client.on_socket_register_write = want_write
        client.on_socket_unregister_write = done_write


async def province(port: int, url: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    figures = Figures()
    now = time.monotonic()
    busy: set[SimGateway] = set()
    sims = [SimGateway(f"P{n:04d}", f"pg{n:04d}", figures, now, busy) for n in range(GATEWAYS)]
    driver = Driver(loop)
    for sim in sims:
        driver.attach(sim.client)
        sim.client.connect("127.0.0.1", port, keepalive=60)
        await asyncio.sleep(0)
    await wait_for(lambda: all(s.connected for s in sims), 120)
    # central is consuming: every gateway's birth state is in the store
    engine = make_engine(url)
    try:
        async with asyncio.timeout(120):
            while await _states_stored(engine) < GATEWAYS:  # noqa: ASYNC110 - in the store
                await asyncio.sleep(0.5)
    finally:
        await engine.dispose()

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for sim in sims:
                sim.client.loop_misc()
                sim.state_due(now)

    misc = asyncio.create_task(keepalive())
    phases: list[dict[str, Any]] = []
    try:
        for rate in RATES:
            mark = (figures.produced, figures.published, figures.resends, len(figures.latencies))
            start = last = time.monotonic()
            debt = 0.0
            while (now := time.monotonic()) - start < PHASE_S:
                debt += rate * (now - last)  # the rate holds however long a tick took
                last = now
                while debt >= 1:
                    random.choice(sims).produce(now)
                    debt -= 1
                for sim in list(busy):
                    sim.send(now)
                await asyncio.sleep(TICK_S)
            produced = figures.produced - mark[0]
            lat = sorted(figures.latencies[mark[3] :])
            phases.append(
                {
                    "rate": rate,
                    "produced": produced,
                    "acked_in_phase": len(lat),
                    "published": figures.published - mark[1],
                    "resends": figures.resends - mark[2],
                    "p50": _quantile(lat, 0.5),
                    "p99": _quantile(lat, 0.99),
                }
            )
        drain_start = time.monotonic()
        while time.monotonic() - drain_start < 120 and any(s.acked < s.head for s in sims):
            for sim in list(busy):
                sim.send(time.monotonic())
            await asyncio.sleep(TICK_S)
    finally:
        misc.cancel()
        for sim in sims:
            sim.client.disconnect()
    engine = make_engine(url)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(events))).scalar() or 0
    await engine.dispose()
    lat = sorted(figures.latencies)
    return {
        "phases": phases,
        "produced": figures.produced,
        "acknowledged": sum(s.acked for s in sims),
        "stored": int(stored),
        "published_over_produced": figures.published / max(figures.produced, 1),
        "resends": figures.resends,
        "p50": _quantile(lat, 0.5),
        "p99": _quantile(lat, 0.99),
    }


async def _states_stored(engine: Any) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(gateways).where(gateways.c.state_at.is_not(None))
        return int((await conn.execute(query)).scalar() or 0)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def wait_for(predicate: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - state kept by the paho callbacks
            await asyncio.sleep(0.1)


def register_all(url: str, registrations: list[tuple[str, str]]) -> None:
    """The schema at head and every simulated gateway registered (hall, gateway)."""

    async def prepare() -> None:
        engine = make_engine(url)
        await upgrade(engine)
        for hall, gateway in registrations:
            await register(engine, hall, gateway)
        await engine.dispose()

    asyncio.run(prepare())


def test_province_office_hours(tmp_path: Path, broker: Broker, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the province runs on PostgreSQL")

    register_all(database_url, [(f"P{n:04d}", f"pg{n:04d}") for n in range(GATEWAYS)])
    cen = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )
    try:
        result = asyncio.run(province(broker.port, database_url))
    finally:
        cen.stop()
    print(f"\nprovince: {GATEWAYS} gateways, state every {STATE_INTERVAL_S:.0f} s, PostgreSQL")
    for p in result["phases"]:
        print(
            f"  {p['rate']:.0f} events/s for {PHASE_S:.0f} s: produced {p['produced']}, "
            f"ack p50 {p['p50']:.3f} s, p99 {p['p99']:.3f} s, published ÷ produced "
            f"{p['published'] / max(p['produced'], 1):.2f}, stalls resent {p['resends']}"
        )
    print(
        f"  in all: produced {result['produced']}, stored {result['stored']}, acknowledged "
        f"{result['acknowledged']}, published ÷ produced {result['published_over_produced']:.2f}, "
        f"ack p50 {result['p50']:.3f} s, p99 {result['p99']:.3f} s "
        "(targets: all acknowledged, p99 < 2 s, published ÷ produced < 1.2)"
    )
    assert result["stored"] <= result["produced"]
