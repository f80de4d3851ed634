"""Revoking a gateway stops it at the broker: CRL + ACL from central, then one SIGHUP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.security.ca import Identity
from protocols.topics import Channel, subscription, topic
from tests.deploy.support import Peer, TlsBroker, barrier, peers, probe, running

A, C = ("hallA", "gw-1"), ("hallC", "gw-1")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    made = TlsBroker.create(tmp_path / "broker")
    with running(made):
        yield made


def _peer(broker: TlsBroker, name: str, identity: Identity) -> Peer:
    return Peer(broker.port, broker.identity(name, identity))


def _central(broker: TlsBroker) -> Peer:
    central = Peer(broker.port, broker.identity("central", broker.store.issue_central("main")))
    assert central.connect()
    central.subscribe(subscription(Channel.EVENTS))
    return central


def test_revoked_gateway_is_silenced_at_once_and_cannot_come_back(broker: TlsBroker) -> None:
    store = broker.store
    gw_a = _peer(broker, "A", store.issue_gateway(*A))
    gw_c = _peer(broker, "C", store.issue_gateway(*C))
    broker.sync()
    with peers(_central(broker), gw_a, gw_c) as (central, gw_a, gw_c):
        assert gw_a.connect() and gw_c.connect()
        gw_c.subscribe(topic(*C, Channel.CMD))
        gw_c.publish(topic(*C, Channel.EVENTS), b"before")
        central.wait_for(b"before")

        assert store.revoke_gateway(*C)
        broker.sync()  # CRL, ACL, SIGHUP

        # Mosquitto keeps the open connection, but the ACL no longer lets it do anything.
        gw_c.publish(topic(*C, Channel.EVENTS), b"after")
        barrier(gw_a, central, topic(*A, Channel.EVENTS))
        assert b"after" not in central.received()
        central.publish(topic(*C, Channel.CMD), b"cmd after")
        gw_c.publish(topic(*C, Channel.EVENTS), b"flush")  # its PUBACK trails any delivery
        assert b"cmd after" not in gw_c.received()

        # A new connection is refused at the handshake: the CRL was re-read on SIGHUP.
        c_tls = (store.ca_cert_path, broker.root / "C.crt", broker.root / "C.key")
        assert probe(broker.port, c_tls).startswith("refused:")
        a_tls = (store.ca_cert_path, broker.root / "A.crt", broker.root / "A.key")
        assert probe(broker.port, a_tls) == "connack:0"

    broker.restart()
    assert probe(broker.port, c_tls).startswith("refused:")
    assert probe(broker.port, a_tls) == "connack:0"


def test_reprovisioned_gateway_replaces_the_old_certificate(broker: TlsBroker) -> None:
    """A replacement box gets a new key; the old one (stolen, broken) stops working."""
    store = broker.store
    old = broker.identity("old", store.issue_gateway(*C))
    broker.sync()
    assert probe(broker.port, old) == "connack:0"

    new = broker.identity("new", store.issue_gateway(*C))
    broker.sync()
    assert probe(broker.port, old).startswith("refused:")
    with peers(_central(broker), Peer(broker.port, new)) as (central, gw):
        assert gw.connect()
        gw.publish(topic(*C, Channel.EVENTS), b"from the replacement")
        central.wait_for(b"from the replacement")
