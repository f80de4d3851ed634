"""The MQTT case feed through a real Mosquitto: stored once, answered on the reply topic, shared
between aggregator processes, and wired into the aggregator next to the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.cases.context import CaseContext
from central.cases.mqttfeed import FEED_TOPIC, CaseFeed, results_topic
from central.config import BrokerConfig, CentralConfig, RulesConfig
from central.security.tokens import Role
from central.spine.aggregator import Aggregator
from central.store.schema import cases
from tests.central.cases.support import ID_NO, PHONE, bearer, case
from tests.support.broker import Broker

REPLY = results_topic("shenpi")


class ApprovalSystem:
    """The sender: publishes batches, collects every message on the topics it watches."""

    def __init__(self, port: int, watch: tuple[str, ...] = (REPLY,)) -> None:
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="shenpi", protocol=mqtt.MQTTv311
        )
        self.client.on_message = lambda _c, _u, m: self.received.put(
            (m.topic, json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        for topic in watch:
            self.client.subscribe(topic, qos=1)[1]
        self.client.publish("hw/v1/_feeds/ping", b"", qos=1).wait_for_publish(5)

    def send(self, doc: dict[str, Any]) -> None:
        self.client.publish(FEED_TOPIC, json.dumps(doc).encode(), qos=1).wait_for_publish(5)

    async def reply(self, timeout: float = 10) -> tuple[str, dict[str, Any]]:
        return await asyncio.to_thread(self.received.get, True, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def database_at_head() -> bool:
    return False  # the aggregator's test starts on an empty database, as on a first install


@pytest.fixture
def sender(broker: Broker) -> Iterator[ApprovalSystem]:
    s = ApprovalSystem(broker.port, (REPLY, "hw/v1/+/+/cmd"))
    yield s
    s.close()


@contextlib.asynccontextmanager
async def member(
    engine: AsyncEngine,
    context: CaseContext,
    port: int,
    instance: str,
    seen: list[dict[str, Any]] | None = None,
) -> AsyncIterator[CaseFeed]:
    feed = CaseFeed(
        engine,
        context.masker,
        BrokerConfig(port=port, instance=instance),
        on_result=seen.append if seen is not None else None,
    )
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), 10)
        yield feed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_batch_is_stored_once_and_answered(
    engine: AsyncEngine, context: CaseContext, broker: Broker, sender: ApprovalSystem
) -> None:
    rows = [
        case("Q-1", applicant={"phone": PHONE, "id_no": ID_NO}),
        case("Q-2"),
        case("Q-3", legal_days=-1),
    ]
    async with member(engine, context, broker.port, "m1"):
        sender.send({"batch_id": "2026-09-18#1", "reply_to": REPLY, "cases": rows})
        topic, reply = await sender.reply()
        assert topic == REPLY
        assert (reply["batch_id"], reply["created"], reply["rejected"]) == ("2026-09-18#1", 2, 1)
        assert reply["results"][2]["errors"][0].startswith("legal_days:")
        sender.send({"batch_id": "2026-09-18#1", "reply_to": REPLY, "cases": rows})  # resent
        _, again = await sender.reply()
        assert (again["unchanged"], again["created"]) == (2, 0)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(cases.c.case_no, cases.c.source, cases.c.applicant_masked).order_by(
                    cases.c.case_no
                )
            )
        ).all()
    assert [tuple(r) for r in stored] == [
        ("Q-1", "mqtt", "138****5678 1****************X"),
        ("Q-2", "mqtt", None),
    ]
    assert PHONE not in json.dumps([reply, again])


async def test_a_reply_outside_the_results_tree_is_refused(
    engine: AsyncEngine, context: CaseContext, broker: Broker, sender: ApprovalSystem
) -> None:
    seen: list[dict[str, Any]] = []
    async with member(engine, context, broker.port, "m1", seen):
        # a reply there would be a command to a gateway
        sender.send({"reply_to": "hw/v1/H1/gw1/cmd", "cases": [case("X-1")]})
        sender.send({"reply_to": REPLY, "cases": "none"})
        topic, reply = await sender.reply()
    assert topic == REPLY and "cases" in reply["error"]  # the second batch's answer
    assert "reply_to" in seen[0]["error"]
    assert sender.received.empty()  # nothing was published on the gateway's cmd topic
    async with engine.connect() as conn:
        assert (await conn.execute(select(cases.c.case_no))).all() == []


async def test_members_of_the_group_share_the_batches(
    engine: AsyncEngine, context: CaseContext, broker: Broker, sender: ApprovalSystem
) -> None:
    seen: list[dict[str, Any]] = []
    async with (
        member(engine, context, broker.port, "m1", seen),
        member(engine, context, broker.port, "m2", seen),
    ):
        for i in range(8):
            sender.send({"batch_id": f"b{i}", "reply_to": REPLY, "cases": [case(f"G-{i}")]})
        replies = [(await sender.reply())[1] for _ in range(8)]
    assert sorted(r["batch_id"] for r in replies) == [f"b{i}" for i in range(8)]
    assert all(r["created"] == 1 for r in replies)  # each batch handled by exactly one member
    assert len(seen) == 8


async def test_the_aggregator_runs_the_feed_the_ladder_and_serves_the_api(
    database_url: str, broker: Broker, sender: ApprovalSystem, tmp_path: Path
) -> None:
    config = CentralConfig(
        database_url=database_url,
        data_dir=tmp_path / "central",
        broker=BrokerConfig(port=broker.port, instance="agg1"),
        rules=RulesConfig(ladder_every_s=1),
    )
    aggregator = Aggregator(config)
    await aggregator.start()
    try:
        # the feed subscribes shortly after the start; until a result comes, a sender resends
        # (storing is idempotent)
        reply: dict[str, Any] = {}
        for _ in range(20):
            sender.send({"batch_id": "one", "reply_to": REPLY, "cases": [case("A-1")]})
            with contextlib.suppress(queue.Empty):
                _, reply = await sender.reply(0.5)
                break
        assert reply["created"] == 1
        assert (tmp_path / "central" / "applicant.salt").stat().st_mode & 0o777 == 0o600
        app = create_app(aggregator.engine)  # no explicit context: the aggregator's is found
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://central"
        ) as client:
            sup = await bearer(aggregator.engine, Role.SUPERVISOR)
            for _ in range(100):  # the ladder job runs every second here
                detail = (await client.get("/api/v1/cases/A-1", headers=sup)).json()
                if detail["steps"] and detail["ladder"]["source"] == "job":
                    break
                await asyncio.sleep(0.1)
            assert detail["ladder"]["source"] == "job"
            assert detail["steps"][-1]["stage"] == "supervision_letter"
            posted = await client.post("/api/v1/cases", headers=sup, json={"cases": [case("A-2")]})
            assert posted.json()["created"] == 1
    finally:
        await aggregator.stop()
