"""The province broker end to end: a 3-node RabbitMQ cluster (MQTT on TLS, certificate login,
topic permissions), real gateway processes, central reading partitioned quorum queues over AMQP;
one node killed with ``kill -9`` mid-stream. One cluster for the module (it takes ~30 s)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import procs
from tests.support.databases import create_pg_database, drop_pg_database, postgres_available
from tests.support.loop_thread import LoopThread
from tests.support.rabbit import SERVER, RabbitCluster
from tests.support.tcp_balancer import TcpBalancer

GATEWAYS = [("H1", "gw1"), ("H1", "gw2"), ("H2", "gw3"), ("H3", "gw4")]
EVENTS_EACH = 4_000


def _installable() -> bool:
    if SERVER.exists():
        return True
    return (
        shutil.which("apt-get") is not None
        and (
            subprocess.run(["apt-get", "install", "-y", "rabbitmq-server"], capture_output=True)
        ).returncode
        == 0
        and SERVER.exists()
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    if not _installable():
        pytest.skip("rabbitmq-server is not installed and apt-get could not install it")
    started = RabbitCluster.start(tmp_path_factory.mktemp("rabbit"), 3)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def province_db(tmp_path: Path) -> Iterator[str]:
    """PostgreSQL as in a province when the machine has it; SQLite otherwise."""
    if not postgres_available():
        yield f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
        return
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


def journal_meta(tmp: Path, gateway: str) -> dict[str, int]:
    with sqlite3.connect(tmp / f"edge-{gateway}" / "journal.db") as db:
        return {k: int(v) for k, v in db.execute("SELECT key, value FROM meta").fetchall()}


def central_config(tmp: Path, url: str, cluster: RabbitCluster) -> Path:
    data: dict[str, Any] = {
        "database_url": url,
        "data_dir": str(tmp / "central"),
        "broker": {
            "kind": "rabbitmq",
            "amqp": {"urls": cluster.amqp_urls(), "partitions": 4, "prefetch": 200},
        },
        "http": {"enabled": False},
    }
    return procs.write_yaml(tmp / "central.yaml", data)


def test_events_survive_a_killed_node_exactly_once(
    cluster: RabbitCluster, province_db: str, tmp_path: Path
) -> None:
    procs.prepare_central(province_db, GATEWAYS)
    tls = {gateway: cluster.add_gateway(hall, gateway) for hall, gateway in GATEWAYS}
    with LoopThread() as loop:
        balancer = TcpBalancer([node.mqtts_port for node in cluster.nodes])
        port = loop.run(balancer.start())
        config = central_config(tmp_path, province_db, cluster)
        cen = procs.central(config, tmp_path / "c.log")
        gws = [
            procs.edge(
                procs.edge_config(
                    tmp_path,
                    port,
                    hall=hall,
                    gateway=gateway,
                    broker={"tls": tls[gateway]},
                    generator={
                        "enabled": True,
                        "rate": 0,
                        "total": EVENTS_EACH,
                        "witness": str(tmp_path / f"witness-{gateway}.txt"),
                    },
                    uplink={"batch_events": 200},
                ),
                tmp_path / f"{gateway}.log",
            )
            for hall, gateway in GATEWAYS
        ]
        try:
            total = len(GATEWAYS) * (EVENTS_EACH + 1)  # + gateway.boot each

            def stored_all() -> int:
                return sum(procs.committed_through(province_db, g) for _, g in GATEWAYS)

            procs.wait_until(lambda: stored_all() >= total // 5, 120, "a fifth committed")
            cluster.kill9(0)  # the node central connected to first, and the partitions' leader
            for _, gateway in GATEWAYS:

                def delivered(g: str = gateway) -> bool:
                    return procs.committed_through(province_db, g) >= EVENTS_EACH + 1

                procs.wait_until(delivered, 150, f"{gateway}'s events committed")

                def acknowledged(g: str = gateway) -> bool:
                    meta = journal_meta(tmp_path, g)
                    return meta.get("acked_seq", 0) >= meta.get("head_seq", 1)

                procs.wait_until(acknowledged, 60, f"{gateway}'s journal acknowledged")
            report = subprocess.run(
                [str(procs.BIN / "hallwatch-central"), "broker", "partitions", "-c", str(config)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert report.returncode == 0, report.stderr
            lines = [line for line in report.stdout.splitlines() if "hw.intake." in line]
            assert len(lines) == 4 and all("consumers 1" in line for line in lines), report.stdout
        finally:
            for gw in gws:
                gw.stop()
            cen.stop()
            loop.run(balancer.stop())
    for _, gateway in GATEWAYS:
        seqs, bodies, committed = procs.stored(province_db, gateway)
        assert seqs == list(range(1, committed + 1)), f"{gateway}: a gap or a duplicate"
        seen = procs.read_witness(tmp_path / f"witness-{gateway}.txt")
        assert len(seen) == EVENTS_EACH
        by_seq = dict(zip(seqs, bodies, strict=True))
        for seq, (run, n) in seen.items():
            assert by_seq[seq] == {"n": n, "run": run}
    log = (tmp_path / "c.log").read_text()
    assert "consuming 4 partitions" in log
    # central moved to another node once, for the node killed; never for its own doing
    assert log.count("lost the broker") == 1, log


class _Session:
    """One raw MQTT connection with a gateway's certificate."""

    def __init__(self, tls: dict[str, str], port: int, client_id: str) -> None:
        self.granted: dict[int, list[int]] = {}
        self.dropped = threading.Event()
        self.up = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        client.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"])
        client.reconnect_delay_set(60, 60)  # a refusal stays visible
        client.on_connect = lambda *_: self.up.set()
        client.on_subscribe = lambda _c, _u, mid, codes, _p: self.granted.__setitem__(
            mid, [c.value for c in codes]
        )
        client.on_disconnect = lambda *_: self.dropped.set()
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        procs.wait_until(self.up.is_set, 20, "the connection")
        self.client = client

    def subscribe(self, topic: str) -> int:
        _, mid = self.client.subscribe(topic, 1)
        assert mid is not None
        return mid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_gateway_speaks_only_for_itself(cluster: RabbitCluster) -> None:
    """Topic permissions on amq.topic: its own topics yes; another gateway's acks or events no
    (RabbitMQ 3.10 closes the connection of an unauthorised subscribe or publish)."""
    tls = cluster.add_gateway("H9", "gw9")
    port = cluster.nodes[1].mqtts_port
    own = _Session(tls, port, "gw9")
    try:
        mid = own.subscribe("hw/v1/H9/gw9/ack")
        procs.wait_until(lambda: mid in own.granted, 20, "SUBACK for its own acks")
        assert own.granted[mid] == [1]
        mine = own.client.publish("hw/v1/H9/gw9/state", b"{}", qos=1)
        mine.wait_for_publish(20)
        assert mine.is_published()
        assert not own.dropped.is_set()
        other = own.subscribe("hw/v1/H1/gw1/ack")
        procs.wait_until(lambda: other in own.granted or own.dropped.is_set(), 20, "refusal")
        assert own.dropped.is_set() or own.granted[other] == [0x80]
    finally:
        own.close()
    sender = _Session(tls, port, "gw9")
    try:
        sender.client.publish("hw/v1/H1/gw1/events", b"{}", qos=1)
        procs.wait_until(sender.dropped.is_set, 20, "the connection closed for a foreign publish")
    finally:
        sender.close()
