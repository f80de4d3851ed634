"""The live lanes' path of their own (``ingest.live``): a live batch is committed and
acknowledged beside the drain's groups, not behind them; one gateway's live and drain batches
in two transactions at once are stored once and acknowledged without going back; a lock that
times out is tried again, never quarantined. Real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from central.config import CentralConfig
from central.spine.aggregator import Aggregator
from central.spine.ingest import Ingestor
from central.spine.outcome import AckDecision, SentAcks
from central.spine.reading import Incoming, StoreUnavailable
from central.spine.registry import register
from central.store.db import make_engine
from central.store.schema import events, gateways, quarantine
from edge.sendwindow import SendWindow, WindowLimits
from protocols import topics
from protocols.envelope import Ack
from tests.central.spine.test_ingest import count, message
from tests.support.broker import Broker
from tests.support.databases import AT_HEAD, scratch_database

pytestmark = pytest.mark.postgres
EPOCH = "aaaa0001"
WAIT_S = 60.0  # for what should come within a second: the machine is loaded


def live(seqs: range, gateway: str) -> Incoming:
    msg = message(seqs, gateway=gateway, epoch=EPOCH)
    return replace(msg, topic=topics.topic("H1", gateway, topics.Channel.LIVE))


def drain(seqs: range, gateway: str) -> Incoming:
    return message(seqs, gateway=gateway, epoch=EPOCH)


class Gateways:
    """One MQTT client publishing for the test's gateways and hearing their acks in order."""

    def __init__(self, port: int) -> None:
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-gateways")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("hw/v1/+/+/ack", qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.acks.append(Ack.model_validate_json(msg.payload))

    def heard(self, gateway: str) -> list[Ack]:
        with self._lock:
            return [ack for ack in self.acks if ack.gateway == gateway]

    def publish(self, msg: Incoming) -> None:
        self.client.publish(msg.topic, msg.payload, qos=1)

    async def until_acked(self, gateway: str, through: int) -> None:
        await until(lambda: any(a.committed_through >= through for a in self.heard(gateway)))

    async def ready(self) -> None:
        await until(self._subscribed.is_set)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout):
        while not done():  # noqa: ASYNC110 - the paho thread or the store changes it
            await asyncio.sleep(0.05)


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with scratch_database("postgresql", tmp_path, AT_HEAD) as url:
        yield url


@pytest.fixture
async def central(pg_url: str, tmp_path: Path, broker: Broker) -> AsyncIterator[Aggregator]:
    config = CentralConfig.model_validate(
        {
            "database_url": pg_url,
            "data_dir": str(tmp_path / "central"),
            "broker": {"host": "127.0.0.1", "port": broker.port, "instance": "live1"},
            "http": {"enabled": False},
        }
    )
    aggregator = Aggregator(config)
    await aggregator.start()
    try:
        for gateway in ("slow", "fast", "gw1"):
            await register(aggregator.engine, "H1", gateway)
        await asyncio.wait_for(aggregator.consumer.connected.wait(), WAIT_S)
        yield aggregator
    finally:
        await aggregator.stop()


async def lock_waiters(engine: AsyncEngine) -> int:
    """Backends of this database waiting for a lock (the drain's transaction, here)."""
    async with engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int((await conn.execute(query)).scalar() or 0)


async def test_a_live_batch_is_committed_while_a_drain_group_waits_on_a_lock(
    central: Aggregator, broker: Broker
) -> None:
    """The drain's group holds gateway ``slow``'s batch and waits for its row, locked by
    another connection; gateway ``fast``'s live batch is committed and acknowledged meanwhile
    (on one path for both, it waited for the drain's group to commit)."""
    gateways_ = Gateways(broker.port)
    holder = make_engine(central.config.database_url)
    try:
        await gateways_.ready()
        await asyncio.sleep(0.5)  # central's shared subscription follows its CONNACK
        async with holder.begin() as conn:
            await conn.execute(
                select(gateways.c.gateway_id)
                .where(gateways.c.gateway_id == "slow")
                .with_for_update()
            )
            gateways_.publish(drain(range(1, 4), "slow"))
            async with asyncio.timeout(WAIT_S):
                while await lock_waiters(holder) == 0:  # noqa: ASYNC110 - the store's
                    await asyncio.sleep(0.05)
            gateways_.publish(live(range(1, 4), "fast"))
            await gateways_.until_acked("fast", 3)
            assert not gateways_.heard("slow")  # its group still waits for the lock
            assert await lock_waiters(holder) == 1
        await gateways_.until_acked("slow", 3)
    finally:
        gateways_.stop()
        await holder.dispose()
    assert await count(central.engine) == 6


async def test_one_gateways_live_and_drain_batches_on_both_paths_store_once(
    central: Aggregator, broker: Broker
) -> None:
    """A lane 600 seqs ahead of the drain, their batches interleaved: both paths hold the
    gateway's batches at once round after round. Every seq is stored once, the gateway
    commits through its head, and its acks never go back nor ask for a gap already filled."""
    gateways_ = Gateways(broker.port)
    head = 1200
    try:
        await gateways_.ready()
        await asyncio.sleep(0.5)
        for n in range(30):
            gateways_.publish(drain(range(1 + 20 * n, 21 + 20 * n), "gw1"))
            for k in (2 * n, 2 * n + 1):
                gateways_.publish(live(range(601 + 10 * k, 611 + 10 * k), "gw1"))

        async def committed() -> int:
            async with central.engine.connect() as conn:
                query = select(gateways.c.committed_through).where(gateways.c.gateway_id == "gw1")
                return int((await conn.execute(query)).scalar() or 0)

        async with asyncio.timeout(WAIT_S):
            while await committed() < head:  # noqa: ASYNC110 - the store's
                await asyncio.sleep(0.1)
        # as the gateway does once its ack stream is silent: the last batch again
        gateways_.publish(live(range(head - 9, head + 1), "gw1"))
        await gateways_.until_acked("gw1", head)
    finally:
        gateways_.stop()
    async with central.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(events.c.seq, func.count())
                .where(events.c.gateway_id == "gw1")
                .group_by(events.c.seq)
            )
        ).all()
    assert sorted(seq for seq, _ in stored) == list(range(1, head + 1))
    assert all(n == 1 for _, n in stored)
    assert await count(central.engine, quarantine) == 0
    heard = 0
    for ack in gateways_.heard("gw1"):
        assert ack.committed_through >= heard, gateways_.heard("gw1")
        assert ack.replay_from is None or ack.replay_from > heard, gateways_.heard("gw1")
        heard = ack.committed_through


def test_an_ack_of_an_older_commit_goes_out_as_the_newest_sent() -> None:
    """Acks ready out of commit order: the older one's replay request would make the gateway
    send its window again (its real send window shows it); the newest ack goes again
    instead. A later commit's ack that says less (a resend's) and a rebase go as they are."""
    newer = AckDecision("H1", "gw1", 600, None, epoch=EPOCH, stored_through=800)
    older = AckDecision("H1", "gw1", 400, 401, epoch=EPOCH, stored_through=400)

    def window_after(*acks: AckDecision) -> SendWindow:
        window = SendWindow(WindowLimits(1000, 100, 1 << 20, 5.0), now=0.0)
        window.on_published(900, acked=0, now=0.0)
        acked = 0
        for decision in acks:
            ack = Ack(
                hall="H1",
                gateway="gw1",
                committed_through=decision.committed_through,
                replay_from=decision.replay_from,
                utc=datetime.now(UTC),
                epoch=EPOCH,
            )
            mark = window.on_ack(ack, journal_epoch=EPOCH, acked=acked, now=1.0).mark_acked
            acked = max(acked, mark or 0)
        return window

    assert window_after(newer, older).rewinds == 1  # the harm: its window goes out again
    sent = SentAcks()
    assert sent.to_send(newer, 1.0) == newer
    again = sent.to_send(older, 2.0)
    assert again == newer and window_after(newer, again).rewinds == 0
    resend = AckDecision("H1", "gw1", 20, None, epoch=EPOCH, stored_through=800)
    assert sent.to_send(resend, 3.0) == resend  # not older: a later commit, as today
    rebase = AckDecision("H1", "gw1", 300, None, epoch=EPOCH, rebase_to=901)
    assert sent.to_send(rebase, 4.0) == rebase
    other = AckDecision("H1", "gw1", 10, None, epoch="bbbb0002", stored_through=10)
    assert sent.to_send(other, 5.0) == other  # a new journal's numbering
    assert sent.last["gw1"] == (other, 5.0)


async def test_a_lock_wait_that_times_out_is_tried_again_never_quarantined(pg_url: str) -> None:
    """A transaction that loses to another (here: its lock wait runs past ``lock_timeout``)
    says nothing about the data: the group is unavailable, not quarantined, and is stored
    once the lock is free."""
    engine = make_engine(pg_url, connect_args={"server_settings": {"lock_timeout": "100"}})
    holder = make_engine(pg_url)
    try:
        await register(engine, "H1", "gw1")
        ingestor = Ingestor(engine)
        async with holder.begin() as conn:
            await conn.execute(
                select(gateways.c.gateway_id)
                .where(gateways.c.gateway_id == "gw1")
                .with_for_update()
            )
            with pytest.raises(StoreUnavailable, match="lock"):
                await ingestor.ingest([drain(range(1, 6), "gw1")])
        assert await count(engine, quarantine) == 0 and await count(engine) == 0
        (ack,) = await ingestor.ingest([drain(range(1, 6), "gw1")])
        assert ack.committed_through == 5 and await count(engine) == 5
    finally:
        await engine.dispose()
        await holder.dispose()
