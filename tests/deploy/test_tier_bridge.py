"""A county broker bridged to a city broker with deploy/mosquitto/bridge-upstream.conf.in.

Both tiers run the production TLS configuration; the bridge logs in upstream with its own
certificate (CN bridge.county1) and the city's ACL lets it speak for its halls only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.security.broker_acl import BridgeAccess, render_bridge_config
from protocols.topics import Channel, subscription, topic
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
