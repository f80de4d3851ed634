"""A county broker bridged to a city broker with deploy/mosquitto/bridge-upstream.conf.in.

Both tiers run the production TLS configuration; the bridge logs in upstream with its own
certificate (CN bridge.county1) and the city's ACL lets it speak for its halls only.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from central.api.app import create_app
from central.config import CentralConfig
from central.security.broker_acl import BridgeAccess, render_bridge_config
from central.security.tokens import Role
from central.spine import bridges
from central.spine.aggregator import Aggregator
from protocols.topics import Channel, subscription, topic
from tests.central.cases.support import bearer
from tests.deploy.support import Peer, TlsBroker, barrier, peers, running, wait_until

A, OUTSIDER = ("hallA", "gw-1"), ("hallZ", "gw-1")
LINK_UP = 30.0  # the bridge retries with a back-off of 5 s and more; no speed is asserted


@dataclass
class Tiers:
    city: TlsBroker
    county: TlsBroker
    central_tls: tuple[Path, Path, Path]
    gateway_tls: tuple[Path, Path, Path]
    outsider_tls: tuple[Path, Path, Path]

    def central(self) -> Peer:
        central = Peer(self.city.port, self.central_tls, client_id="central.main", clean=False)
        assert central.connect()
        central.subscribe(subscription(Channel.EVENTS))
        central.subscribe(subscription(Channel.STATE))
        return central

    def wait_link(self, central: Peer) -> None:
        central.subscribe("hw/bridge/+/state")
        wait_until(
            lambda: (
                ("hw/bridge/county1/state", b"1", True) in central.messages
                or ("hw/bridge/county1/state", b"1", False) in central.messages
            ),
            LINK_UP,
            "the bridge to come up",
        )


@pytest.fixture
def tiers(tmp_path: Path) -> Iterator[Tiers]:
    # One provincial CA for both tiers here; each tier could as well have its own, the
    # bridge only needs a certificate the upstream broker trusts.
    city = TlsBroker.create(tmp_path / "city")
    store = city.store
    county = TlsBroker.create(tmp_path / "county", store=store)
    city.bridges = [BridgeAccess("county1", ("hallA",))]
    bridge_tls = county.identity("bridge", store.issue_bridge("county1"))
    gateway_tls = county.identity("A", store.issue_gateway(*A))
    outsider_tls = county.identity("Z", store.issue_gateway(*OUTSIDER))
    central_tls = city.identity("central", store.issue_central("main"))
    (county.root / "conf.d" / "bridge-county1.conf").write_text(
        render_bridge_config("county1", "127.0.0.1", city.port, *bridge_tls)
    )
    with running(city), running(county):
        yield Tiers(city, county, central_tls, gateway_tls, outsider_tls)


def test_events_go_up_and_commands_come_down(tiers: Tiers) -> None:
    with peers(tiers.central(), Peer(tiers.county.port, tiers.gateway_tls)) as (central, gw):
        tiers.wait_link(central)
        assert gw.connect()
        gw.subscribe(topic(*A, Channel.CMD))
        gw.publish(topic(*A, Channel.STATE), b"online", retain=True)
        gw.publish(topic(*A, Channel.EVENTS), b"evaluation")
        central.wait_for(b"evaluation")
        central.wait_for(b"online")
        central.publish(topic(*A, Channel.CMD), b"replay_from 7")
        gw.wait_for(b"replay_from 7")

    # The gateway's state kept its retain bit on the way up.
    with peers(tiers.central()) as (late,):
        late.subscribe(topic(*A, Channel.STATE))
        wait_until(lambda: (topic(*A, Channel.STATE), b"online", True) in late.messages)


def test_bridge_speaks_only_for_its_halls(tiers: Tiers) -> None:
    """hallZ is admitted by the county, but the city's ACL does not list it for county1."""
    with peers(
        tiers.central(),
        Peer(tiers.county.port, tiers.gateway_tls),
        Peer(tiers.county.port, tiers.outsider_tls),
    ) as (central, gw, outsider):
        tiers.wait_link(central)
        assert gw.connect() and outsider.connect()
        outsider.publish(topic(*OUTSIDER, Channel.EVENTS), b"not ours to carry")
        # Both travel the one bridge connection, in order: the marker closes the case.
        barrier(gw, central, topic(*A, Channel.EVENTS))
        assert b"not ours to carry" not in central.received()
        # And the link survived the refusal (no disconnect per denied message).
        gw.publish(topic(*A, Channel.EVENTS), b"still linked")
        central.wait_for(b"still linked")


def test_events_published_while_the_city_is_down_arrive_after(tiers: Tiers) -> None:
    with peers(tiers.central()) as (central,):
        tiers.wait_link(central)  # the city now has central's persistent session
    tiers.city.stop()
    with peers(Peer(tiers.county.port, tiers.gateway_tls)) as (gw,):
        assert gw.connect()
        sent = [f"offline {i}".encode() for i in range(5)]
        for payload in sent:
            gw.publish(topic(*A, Channel.EVENTS), payload)  # the county PUBACKs and queues
    tiers.city.start()
    with peers(tiers.central()) as (central,):
        for payload in sent:
            central.wait_for(payload, LINK_UP)


# -- central watches the link ----------------------------------------------------------------

GRACE_S = 1.0  # the alarm's grace in this test (60 s by default)


def _central_config(tmp_path: Path, tiers: Tiers, database_url: str) -> CentralConfig:
    conf = {
        "database_url": database_url,
        "data_dir": str(tmp_path / "central"),
        "http": {"enabled": False},
        "broker": {"host": "127.0.0.1", "port": tiers.city.port, **tiers.city.central_tls()},
        "bridges": {"down_grace_s": GRACE_S},
    }
    (tmp_path / "central.yaml").write_text(yaml.safe_dump(conf))
    return CentralConfig.model_validate(conf)


async def _link(engine: AsyncEngine, up: bool, after: datetime | None = None) -> bridges.Link:
    """county1's link once central has it in this state (changed after ``after``)."""
    deadline = time.monotonic() + LINK_UP
    while time.monotonic() < deadline:
        for link in await bridges.links(engine):
            fresh = after is None or link.changed_at > after
            if link.bridge == "county1" and link.up is up and fresh:
                return link
        await asyncio.sleep(0.1)
    raise AssertionError(f"county1's link never seen {'up' if up else 'down'} at central")


def _bridge_list(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    central = str(Path(sys.executable).parent / "hallwatch-central")
    argv = [central, "bridge", "list", "-c", str(tmp_path / "central.yaml")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


async def test_central_sees_a_county_link_go_down_and_come_back(
    tiers: Tiers, tmp_path: Path, database_url: str
) -> None:
    """The county's broker killed (its bridge's will, "0", published by the city), then started
    again ("1"): central's store, API, /healthz and CLI tell the link from idle halls."""
    aggregator = Aggregator(_central_config(tmp_path, tiers, database_url))
    await aggregator.start()
    try:
        engine = aggregator.engine
        up = await _link(engine, up=True)

        county = tiers.county.process
        assert county is not None
        county.kill()  # no DISCONNECT: the city publishes the bridge's will
        county.wait()
        tiers.county.process = None
        down = await _link(engine, up=False, after=up.changed_at)
        # within the grace no alarm; past it, one
        assert not (await bridges.links(engine, now=down.changed_at))[0].alarm
        late = down.changed_at + timedelta(seconds=GRACE_S + 1)
        assert (await bridges.links(engine, now=late))[0].alarm

        app = create_app(engine, tasks=aggregator.supervisor)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://central"
        ) as client:

            async def alarmed() -> dict[str, Any]:
                while True:
                    doc: dict[str, Any] = (await client.get("/healthz")).json()
                    if "county1" in doc["bridges_down"]:
                        return doc
                    await asyncio.sleep(0.1)

            health = await asyncio.wait_for(alarmed(), LINK_UP)
            assert health["bridges_down"]["county1"].startswith("上联 中断 since ")
            technician = await bearer(engine, Role.TECHNICIAN)
            listed = (await client.get("/api/v1/bridges", headers=technician)).json()
            assert [(b["bridge"], b["up"], b["label"], b["alarm"]) for b in listed] == [
                ("county1", False, "上联 中断", True)
            ]
            leader = await bearer(engine, Role.DEPARTMENT_LEADER, department="税务")
            assert (await client.get("/api/v1/bridges", headers=leader)).status_code == 403
            # the overview page's 上联中断 figure, for whoever reaches gateway health only
            page = (await client.get("/api/v1/overview", headers=technician)).json()
            assert [link["bridge"] for link in page["links_down"]] == ["county1"]
            page = (await client.get("/api/v1/overview", headers=leader)).json()
            assert page["links_down"] is None

            shown = await asyncio.to_thread(_bridge_list, tmp_path)
            assert shown.returncode == 1, shown.stdout + shown.stderr  # a link in alarm
            assert "county1  上联 中断 since" in shown.stdout and "告警 alarm" in shown.stdout

            tiers.county.start()
            back = await _link(engine, up=True, after=down.changed_at)
            assert not back.alarm
            health = (await client.get("/healthz")).json()
            assert health["bridges_down"] == {}
        shown = await asyncio.to_thread(_bridge_list, tmp_path)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "county1  上联 正常 since" in shown.stdout
    finally:
        await aggregator.stop()
