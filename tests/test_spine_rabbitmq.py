"""The province broker end to end: a 3-node RabbitMQ cluster (MQTT on TLS, certificate login,
topic permissions), real gateway processes, two aggregators sharing the partitioned quorum
queues over AMQP; one aggregator and one node killed with ``kill -9`` mid-stream. One cluster
for the module (it takes ~30 s)."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import threading
import time
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
EVENTS_EACH = 2_500


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


def start_gateways(
    tmp: Path, port: int, tls: dict[str, dict[str, str]], events_each: int
) -> list[procs.Proc]:
    """The gateways' real processes, each generating ``events_each`` events at once."""
    return [
        procs.edge(
            procs.edge_config(
                tmp,
                port,
                hall=hall,
                gateway=gateway,
                broker={"tls": tls[gateway]},
                generator={
                    "enabled": True,
                    "rate": 0,
                    "total": events_each,
                    "witness": str(tmp / f"witness-{gateway}.txt"),
                },
                uplink={"batch_events": 200},
            ),
            tmp / f"{gateway}.log",
        )
        for hall, gateway in GATEWAYS
    ]


def wait_all_delivered(tmp: Path, db: str, events_each: int) -> None:
    for _, gateway in GATEWAYS:

        def delivered(g: str = gateway) -> bool:
            return procs.committed_through(db, g) >= events_each + 1  # + gateway.boot

        procs.wait_until(delivered, 150, f"{gateway}'s events committed")

        def acknowledged(g: str = gateway) -> bool:
            meta = journal_meta(tmp, g)
            return meta.get("acked_seq", 0) >= meta.get("head_seq", 1)

        procs.wait_until(acknowledged, 60, f"{gateway}'s journal acknowledged")


def assert_exactly_once(tmp: Path, db: str, events_each: int) -> None:
    for _, gateway in GATEWAYS:
        seqs, bodies, committed = procs.stored(db, gateway)
        assert seqs == list(range(1, committed + 1)), f"{gateway}: a gap or a duplicate"
        seen = procs.read_witness(tmp / f"witness-{gateway}.txt")
        assert len(seen) == events_each
        by_seq = dict(zip(seqs, bodies, strict=True))
        for seq, (run, n) in seen.items():
            assert by_seq[seq] == {"n": n, "run": run}


def stored_all(db: str) -> int:
    return sum(procs.committed_through(db, g) for _, g in GATEWAYS)


def broker_partitions(config: Path) -> str:
    report = subprocess.run(
        [str(procs.BIN / "hallwatch-central"), "broker", "partitions", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    return report.stdout


def consumed_by_each(report: str) -> list[set[int]]:
    """The partitions each aggregator heard in the report consumes."""
    found = re.findall(r" partitions ([0-9,]+) ", report)
    return [{int(p) for p in match.split(",")} for match in found]


def test_two_aggregators_share_the_partitions_and_survive_kills(
    cluster: RabbitCluster, province_db: str, tmp_path: Path
) -> None:
    """Two aggregators: each the only consumer of its share of the partitions. Mid-stream one
    is killed with ``kill -9`` (the survivor takes its partitions within 10 s), then the broker
    node they connected to; every event stored exactly once and acknowledged."""
    procs.prepare_central(province_db, GATEWAYS)
    tls = {gateway: cluster.add_gateway(hall, gateway) for hall, gateway in GATEWAYS}
    with LoopThread() as loop:
        balancer = TcpBalancer([node.mqtts_port for node in cluster.nodes])
        port = loop.run(balancer.start())
        config = central_config(tmp_path, province_db, cluster)
        serve = [str(procs.BIN / "hallwatch-central"), "serve", "-c", str(config), "--no-api"]
        aggregators = [procs.Proc(serve, tmp_path / f"a{i}.log").start() for i in (0, 1)]
        survivor = aggregators[0]
        gws: list[procs.Proc] = []
        try:
            for aggregator in aggregators:
                # two aggregators importing and connecting on two busy cores: minutes, not s
                aggregator.wait_for_log("2 aggregator(s) live", timeout=300)
            gws = start_gateways(tmp_path, port, tls, EVENTS_EACH)
            shares: list[set[int]] = []

            def shared() -> bool:
                nonlocal shares
                report = broker_partitions(config)
                shares = consumed_by_each(report)
                one_each = report.count("consumers 1") == 4
                return one_each and len(shares) == 2 and sorted(map(len, shares)) != [0, 4]

            procs.wait_until(shared, 60, "the partitions shared by the two aggregators")
            assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == {0, 1, 2, 3}
            total = len(GATEWAYS) * (EVENTS_EACH + 1)  # + gateway.boot each
            procs.wait_until(
                lambda: stored_all(province_db) >= total // 5, 120, "a fifth committed"
            )
            before = len(survivor.log.read_text())
            aggregators[1].kill9()
            killed_at = time.monotonic()
            procs.wait_until(
                lambda: "consuming partitions 0,1,2,3" in survivor.log.read_text()[before:],
                10,
                "the survivor consuming every partition",
            )
            took_over_s = time.monotonic() - killed_at
            cluster.kill9(0)  # the node the aggregators connected to first
            wait_all_delivered(tmp_path, province_db, EVENTS_EACH)
            report = broker_partitions(config)
            lines = [line for line in report.splitlines() if "hw.intake." in line]
            assert len(lines) == 4 and all("consumers 1" in line for line in lines), report
            heard = [line for line in report.splitlines() if " partitions 0,1,2,3 " in line]
            assert len(heard) == 1 and "last commit never" not in heard[0], report
            print(f"two aggregators: shares {shares}, take-over {took_over_s:.1f} s")
        finally:
            for gw in gws:
                gw.stop()
            for aggregator in aggregators:
                aggregator.stop()
            loop.run(balancer.stop())
    assert_exactly_once(tmp_path, province_db, EVENTS_EACH)
    log = survivor.log.read_text()
    # it moved to another node once, for the node killed; never for its own doing
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
