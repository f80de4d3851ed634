"""Attacks on the production broker setup: a real Mosquitto with TLS, certificates and ACL.

Every refusal has a positive twin (the same step with the right identity succeeds), so these
tests fail if the broker lets everything through *or* if it lets nothing through. Absence of a
message is established with a barrier (a marker sent after it arrives), not with a sleep.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from central.security.ca import CertificateAuthority, central_username, issue_gateway_identity
from protocols.provisioning import gateway_username
from protocols.topics import Channel, shared, subscription, topic
from tests.deploy.support import Peer, TlsBroker, barrier, peers, probe, running, wait_until

PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="mqtt311"), pytest.param(mqtt.MQTTv5, id="mqtt5")]
NOT_AUTHORIZED = 0x87

A, B = ("hallA", "gw-1"), ("hallB", "gw-1")


class Tier:
    """The module's broker and the identities written for it."""

    def __init__(self, root: Path) -> None:
        self.broker = TlsBroker.create(root, local=True)
        store = self.broker.store
        self.tls = {
            "A": self.broker.identity("A", store.issue_gateway(*A)),
            "B": self.broker.identity("B", store.issue_gateway(*B)),
            "central": self.broker.identity("central", store.issue_central("main")),
            "central2": self.broker.identity("central2", store.issue_central("agg2")),
        }
        revoked = store.issue_gateway("hallA", "gw-old")
        self.tls["revoked"] = self.broker.identity("revoked", revoked)
        store.revoke_gateway("hallA", "gw-old")
        # Signed by our CA but never registered: no ACL block.
        self.tls["stranger"] = self.broker.identity(
            "stranger", issue_gateway_identity(store.ca, "hallA", "gw-unknown")
        )
        # A different CA issuing the very same name as A.
        other = CertificateAuthority.create("Impostor CA")
        forged = other.issue_gateway(*A)
        forged.write(root / "forged.crt", root / "forged.key")
        self.tls["forged"] = (store.ca_cert_path, root / "forged.crt", root / "forged.key")
        other_ca = root / "other-ca.crt"
        other_ca.write_bytes(other.cert_pem())
        self.other_ca = other_ca

    def peer(self, who: str, protocol: int = mqtt.MQTTv311, client_id: str = "") -> Peer:
        return Peer(self.broker.port, self.tls[who], protocol=protocol, client_id=client_id)

    def connected(self, who: str, protocol: int = mqtt.MQTTv311, client_id: str = "") -> Peer:
        peer = self.peer(who, protocol, client_id)
        assert peer.connect(), f"{who} could not connect: {peer.connack} {peer.errors}"
        return peer

    def central(self, protocol: int = mqtt.MQTTv311) -> Peer:
        central = self.connected("central", protocol)
        for channel in (Channel.EVENTS, Channel.STATE, Channel.RESULT):
            central.subscribe(subscription(channel))
        return central


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    made = Tier(tmp_path_factory.mktemp("tls-broker"))
    with running(made.broker):
        yield made


def flush(peer: Peer, own: tuple[str, str]) -> None:
    """A round trip on ``peer``'s own connection: whatever the broker sent it before is in.

    The broker writes to one socket in order, so the PUBACK of this publish arrives after any
    delivery queued for ``peer`` earlier. Works even when the publish itself is denied.
    """
    peer.publish(topic(*own, Channel.EVENTS), b"flush")


# -- the positive case every refusal below is measured against -------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gateway_speaks_for_its_own_hall(tier: Tier, protocol: int) -> None:
    with peers(tier.central(), tier.connected("A", protocol)) as (central, gw):
        gw.subscribe(topic(*A, Channel.CMD))
        gw.subscribe(topic(*A, Channel.ACK))
        assert gw.publish(topic(*A, Channel.EVENTS), b"events") == 0
        assert gw.publish(topic(*A, Channel.STATE), b"state", retain=True) == 0
        assert gw.publish(topic(*A, Channel.RESULT), b"result") == 0
        central.wait_for(b"events")
        central.wait_for(b"state")
        central.wait_for(b"result")
        central.publish(topic(*A, Channel.CMD), b"cmd")
        central.publish(topic(*A, Channel.ACK), b"ack")
        gw.wait_for(b"cmd")
        gw.wait_for(b"ack")


# -- publishing into another hall ----------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gateway_cannot_publish_into_another_hall(tier: Tier, protocol: int) -> None:
    with peers(tier.central(), tier.connected("A", protocol), tier.connected("B")) as (
        central,
        gw_a,
        gw_b,
    ):
        gw_b.subscribe(topic(*B, Channel.CMD))
        gw_b.subscribe(topic(*B, Channel.ACK))
        forged = {
            topic(*B, Channel.EVENTS): b"forged events",
            topic(*B, Channel.STATE): b"forged state",
            topic(*B, Channel.RESULT): b"forged result",
            topic(*B, Channel.CMD): b"forged cmd",
            topic(*B, Channel.ACK): b"forged ack",
            topic(*A, Channel.CMD): b"self-made cmd",  # nor commands to itself
            topic("hallA", "gw-2", Channel.EVENTS): b"other gateway, same hall",
        }
        codes = {name: gw_a.publish(name, payload) for name, payload in forged.items()}
        barrier(gw_a, central, topic(*A, Channel.EVENTS))
        barrier(central, gw_b, topic(*B, Channel.CMD))
        received = set(central.received()) | set(gw_b.received())
        assert not received & set(forged.values())
        if protocol == mqtt.MQTTv5:
            # MQTT 5 says so in the PUBACK; on 3.1.1 the PUBACK is a plain 0
            # (docs/field-notes.md#mosquitto).
            assert {code.value for code in codes.values()} == {NOT_AUTHORIZED}
        else:
            assert {code.value for code in codes.values()} == {0}


def test_gateway_will_cannot_land_in_another_hall(tier: Tier) -> None:
    """A Last Will is a publish too: one aimed at hall B is dropped, one at A's own state lands."""
    with peers(tier.central()) as (central,):
        for target, payload in ((B, b"forged will"), (A, b"own will")):
            gw = tier.peer("A")
            assert gw.connect(will=(topic(*target, Channel.STATE), payload))
            closed = tier.broker.log.count("closed its connection")
            gw.client.loop_stop()
            sock = gw.client.socket()
            assert isinstance(sock, socket.socket)
            sock.close()  # no DISCONNECT: the broker must send the will

            def closed_again(before: int = closed) -> bool:
                return tier.broker.log.count("closed its connection") > before

            wait_until(closed_again)
            with peers(tier.connected("A")) as (again,):
                barrier(again, central, topic(*A, Channel.EVENTS))
        assert b"own will" in central.received(topic(*A, Channel.STATE))
        assert b"forged will" not in central.received()


# -- reading another hall ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gateway_cannot_read_another_halls_commands(tier: Tier, protocol: int) -> None:
    with peers(tier.central(), tier.connected("A", protocol), tier.connected("B")) as (
        central,
        gw_a,
        gw_b,
    ):
        filters = [
            topic(*B, Channel.CMD),
            subscription(Channel.ACK, hall="hallB"),
            "hw/v1/#",
            "#",
            shared("spy", topic(*B, Channel.CMD)),
            topic(*A, Channel.CMD),
        ]
        for topic_filter in filters:
            # Granted, as docs/field-notes.md#mosquitto says: the ACL bites at delivery, not at
            # SUBSCRIBE.
            assert not any(code.is_failure for code in gw_a.subscribe(topic_filter))
        gw_b.subscribe(topic(*B, Channel.CMD))
        gw_b.subscribe(topic(*B, Channel.ACK))
        central.publish(topic(*B, Channel.CMD), b"cmd for B")
        central.publish(topic(*B, Channel.ACK), b"ack for B")
        gw_b.wait_for(b"cmd for B")
        gw_b.wait_for(b"ack for B")
        barrier(central, gw_a, topic(*A, Channel.CMD))
        assert {t for t, _, _ in gw_a.messages} == {topic(*A, Channel.CMD)}


def test_gateway_cannot_read_another_halls_retained_state(tier: Tier) -> None:
    with peers(tier.connected("B")) as (gw_b,):
        gw_b.publish(topic(*B, Channel.STATE), b"B retained", retain=True)
    with peers(tier.connected("central"), tier.connected("A")) as (central, gw_a):
        central.subscribe(subscription(Channel.STATE))
        central.wait_for(b"B retained")  # it is there to be had
        gw_a.subscribe(subscription(Channel.STATE))
        gw_a.subscribe(topic(*B, Channel.STATE))
        gw_a.subscribe(topic(*A, Channel.CMD))
        barrier(central, gw_a, topic(*A, Channel.CMD))
        assert b"B retained" not in gw_a.received()


# -- client ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_gateway_cannot_take_over_another_gateways_client_id(tier: Tier, protocol: int) -> None:
    with peers(tier.connected("central"), tier.connected("B")) as (central, gw_b):
        gw_b.subscribe(topic(*B, Channel.CMD))
        for stolen_id in (gateway_username(*B), B[1]):
            with peers(tier.connected("A", protocol, client_id=stolen_id)) as (gw_a,):
                flush(gw_a, A)
        barrier(central, gw_b, topic(*B, Channel.CMD))
        assert gw_b.disconnects == [] and gw_b.connected

        # The twin: B's own certificate does take the session over, and the test sees it.
        with peers(tier.connected("B", protocol, client_id="anything")):
            wait_until(lambda: bool(gw_b.disconnects), what="the first B to be taken over")


# -- who may connect at all ----------------------------------------------------------------


def test_valid_certificate_connects(tier: Tier) -> None:
    assert probe(tier.broker.port, tier.tls["A"]) == "connack:0"


def test_revoked_certificate_cannot_connect(tier: Tier) -> None:
    failures = tier.broker.log.count("certificate verify failed")
    outcome = probe(tier.broker.port, tier.tls["revoked"])
    # Mosquitto hangs up without a TLS alert, so the client only sees the connection end;
    # the broker's log says why.
    assert outcome.startswith("refused:"), outcome
    wait_until(lambda: tier.broker.log.count("certificate verify failed") > failures)
    assert not tier.peer("revoked").connect()


def test_certificate_from_another_ca_is_refused(tier: Tier) -> None:
    outcome = probe(tier.broker.port, tier.tls["forged"])
    assert outcome.startswith("refused:"), outcome
    assert not tier.peer("forged").connect()


def test_client_without_certificate_is_refused(tier: Tier) -> None:
    outcome = probe(tier.broker.port, (tier.broker.store.ca_cert_path, None, None))
    assert outcome.startswith("refused:"), outcome


def test_plain_tcp_to_the_tls_port_is_refused(tier: Tier) -> None:
    assert probe(tier.broker.port, None).startswith("refused:")
    plain = Peer(tier.broker.port, None)
    assert not plain.connect()
    plain.close()


def test_gateway_refuses_a_broker_from_another_ca(tier: Tier) -> None:
    """Server authentication: a gateway trusting only our CA will not talk to an impostor."""
    _, cert, key = tier.tls["A"]
    outcome = probe(tier.broker.port, (tier.other_ca, cert, key))
    assert outcome.startswith("refused:") and "VERIFY_FAILED" in outcome.upper(), outcome


def test_unregistered_certificate_connects_but_may_do_nothing(tier: Tier) -> None:
    """Signed by our CA yet absent from the ACL: no publish lands, no command arrives."""
    stranger_id = ("hallA", "gw-unknown")
    with peers(tier.central(), tier.connected("stranger", mqtt.MQTTv5)) as (central, stranger):
        stranger.subscribe(topic(*stranger_id, Channel.CMD))
        assert stranger.publish(topic(*stranger_id, Channel.EVENTS), b"x").value == NOT_AUTHORIZED
        central.publish(topic(*stranger_id, Channel.CMD), b"cmd for stranger")
        flush(stranger, stranger_id)
        assert stranger.received() == []


# -- central's side ------------------------------------------------------------------------


def test_central_shares_the_event_stream(tier: Tier) -> None:
    group = shared("central", subscription(Channel.EVENTS))
    with peers(tier.connected("central"), tier.connected("central2"), tier.connected("A")) as (
        one,
        two,
        gw,
    ):
        one.subscribe(group)
        two.subscribe(group)
        sent = [f"event {i}".encode() for i in range(20)]
        for payload in sent:
            gw.publish(topic(*A, Channel.EVENTS), payload)
        wait_until(lambda: len(one.received()) + len(two.received()) >= len(sent))
        assert sorted(one.received() + two.received()) == sorted(sent)


def test_localhost_listener_admits_central_by_password_only(tier: Tier) -> None:
    port = tier.broker.local_port
    assert port is not None
    attempts = {
        "anonymous": Peer(port, None),
        "wrong password": Peer(port, None, username=central_username(), password="guess"),
        "gateway name": Peer(port, None, username=gateway_username(*A), password=""),
    }
    for what, peer in attempts.items():
        assert not peer.connect(), what
        peer.close()
    central = Peer(port, None, username=central_username(), password=tier.broker.central_password)
    with peers(central, tier.connected("A")) as (central, gw):
        assert central.connect()
        central.subscribe(subscription(Channel.EVENTS))
        gw.publish(topic(*A, Channel.EVENTS), b"seen from localhost")
        central.wait_for(b"seen from localhost")


def test_the_server_certificate_is_checked_against_the_expected_name(tier: Tier) -> None:
    """The broker certificate names localhost, 127.0.0.1 and the configured DNS name."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tier.broker.root / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "broker.test"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
