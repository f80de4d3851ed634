"""How Mosquitto 2.0.11 itself behaves, where our configuration depends on it.

These pin the measurements deploy/mosquitto/README.md cites. If one fails after a broker
upgrade, the behaviour changed: revisit the README and the setting it justifies.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from paho.mqtt.enums import CallbackAPIVersion

from central.security.broker_acl import render_dev_config
from hallkit.atomicfile import write_public
from protocols.topics import Channel, subscription, topic
from tests.deploy.support import Peer, TlsBroker, barrier, peers, probe, running, wait_until
from tests.support.broker import MOSQUITTO, free_port, wait_port

A, C = ("hallA", "gw-1"), ("hallC", "gw-1")


def test_crl_is_reread_on_sighup_only_and_spares_open_connections(tmp_path: Path) -> None:
    broker = TlsBroker.create(tmp_path / "broker")
    store = broker.store
    a_tls = broker.identity("A", store.issue_gateway(*A))
    c_tls = broker.identity("C", store.issue_gateway(*C))
    central_tls = broker.identity("central", store.issue_central("main"))
    with (
        running(broker),
        peers(Peer(broker.port, central_tls), Peer(broker.port, c_tls)) as (
            central,
            open_c,
        ),
    ):
        assert central.connect()
        central.subscribe(subscription(Channel.EVENTS))

        store.revoke_gateway(*C)
        store.write_crl(broker.files.crl)  # the CRL only; the ACL still admits C
        assert probe(broker.port, c_tls) == "connack:0", (
            "a changed crlfile is not re-read by itself"
        )
        assert open_c.connect()  # after the probe, which took the same client id

        broker.hup()
        assert probe(broker.port, c_tls).startswith("refused:"), "SIGHUP re-reads the crlfile"
        assert probe(broker.port, a_tls) == "connack:0"

        # The connection opened before the SIGHUP is not re-checked against the CRL: this is
        # why revocation also removes the gateway from the ACL.
        assert open_c.connected
        open_c.publish(topic(*C, Channel.EVENTS), b"still flowing")
        central.wait_for(b"still flowing")


def test_expired_crl_shuts_everyone_out(tmp_path: Path) -> None:
    broker = TlsBroker.create(tmp_path / "broker")
    a_tls = broker.identity("A", broker.store.issue_gateway(*A))
    with running(broker):
        assert probe(broker.port, a_tls) == "connack:0"
        ca = broker.store.ca
        now = dt.datetime.now(dt.UTC)
        stale = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(now - dt.timedelta(days=2))
            .next_update(now - dt.timedelta(days=1))
            .sign(ca.key, hashes.SHA256())
        )
        write_public(broker.files.crl, stale.public_bytes(serialization.Encoding.PEM))
        broker.hup()
        assert probe(broker.port, a_tls).startswith("refused:"), "nobody passes a stale CRL"

        broker.store.write_crl(broker.files.crl)  # what central.security.ca issues: years ahead
        broker.hup()
        assert probe(broker.port, a_tls) == "connack:0"


@pytest.mark.parametrize(("max_queued_messages", "kicked"), [("0", True), ("2147483647", False)])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt311", "mqtt5"])
def test_denied_publish_disconnects_only_when_max_queued_messages_is_0(
    tmp_path: Path, max_queued_messages: str, kicked: bool, protocol: int
) -> None:
    """Why hallwatch-tls.conf.in uses a count never reached instead of 0 ("no limit")."""
    port = free_port()
    (tmp_path / "acl").write_text("topic write allowed/#\ntopic read allowed/#\n")
    conf = render_dev_config(port, tmp_path).replace(
        "max_queued_messages 0", f"max_queued_messages {max_queued_messages}"
    )
    (tmp_path / "mosquitto.conf").write_text(conf + f"acl_file {tmp_path / 'acl'}\n")
    with (tmp_path / "log").open("ab") as log:
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port)
        with peers(Peer(port, None, protocol=protocol)) as (client,):
            assert client.connect()
            client.subscribe("allowed/#")
            code = client.publish("denied/x", b"denied")  # PUBACKed either way
            assert code.value == (0x87 if protocol == mqtt.MQTTv5 else 0)
            if kicked:
                wait_until(lambda: bool(client.disconnects), what="the disconnect")
            else:
                client.publish("allowed/x", b"allowed")
                client.wait_for(b"allowed")
                assert client.disconnects == []
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.soak
def test_memory_limit_starves_a_persistent_subscriber(tmp_path: Path) -> None:
    """Why memory_limit is only a last guard: once reached, a queue cannot drain."""
    port = free_port()
    conf = render_dev_config(port, tmp_path).replace(
        "memory_limit 1073741824", "memory_limit 8000000"
    )
    (tmp_path / "mosquitto.conf").write_text(conf)
    with (tmp_path / "log").open("ab") as log:
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port)
        slow = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="slow", clean_session=False)
        slow.connect("127.0.0.1", port)
        slow.subscribe("t/#", 1)
        slow.loop_start()
        time.sleep(0.5)
        slow.disconnect()
        slow.loop_stop()
        publisher = Peer(port, None)
        assert publisher.connect()
        acked = 0
        for _ in range(2000):
            info = publisher.client.publish("t/a", b"x" * 10_000, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            time.sleep(0.001)
        time.sleep(2)
        acked = len(publisher.pubacks)
        publisher.close()
        got: list[int] = []
        slow = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="slow", clean_session=False)
        slow.on_message = lambda c, u, m: got.append(m.mid)
        slow.connect("127.0.0.1", port)
        slow.loop_start()
        time.sleep(10)
        slow.loop_stop()
        assert acked > 2 * len(got), (acked, len(got))
        assert "disconnected due to out of memory" in (tmp_path / "log").read_text()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)


def test_barrier_is_sound(tmp_path: Path) -> None:
    """The barrier the security tests rely on: deliveries to one client keep their order."""
    broker = TlsBroker.create(tmp_path / "broker")
    a_tls = broker.identity("A", broker.store.issue_gateway(*A))
    central_tls = broker.identity("central", broker.store.issue_central("main"))
    with (
        running(broker),
        peers(Peer(broker.port, central_tls), Peer(broker.port, a_tls)) as (
            central,
            gw,
        ),
    ):
        assert central.connect() and gw.connect()
        central.subscribe(subscription(Channel.EVENTS))
        sent = [f"m{i}".encode() for i in range(200)]
        for payload in sent:
            gw.client.publish(topic(*A, Channel.EVENTS), payload, qos=1)
        barrier(gw, central, topic(*A, Channel.EVENTS))
        assert central.received()[: len(sent)] == sent
