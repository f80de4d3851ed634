"""The spine end to end on real parts: Mosquitto, the gateway process, central on both DBs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import procs
from tests.support.broker import Broker
from tests.support.databases import AT_HEAD, copy_pg_template, drop_pg_database, scratch_database


@pytest.fixture
def database_at_head() -> bool:
    return True  # every test runs prepare_central first: start from the migrated template


def test_events_flow_from_generator_to_central_once(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    procs.prepare_central(database_url, [("H1", "gw1")])
    cen = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )
    witness = tmp_path / "witness.txt"
    gw = procs.edge(
        procs.edge_config(
            tmp_path,
            broker.port,
            generator={"enabled": True, "rate": 0, "total": 20_000, "witness": str(witness)},
        ),
        tmp_path / "edge.log",
    )
    try:
        # 20,000 generated + 1 gateway.boot
        procs.wait_until(
            lambda: procs.committed_through(database_url, "gw1") >= 20_001,
            60,
            "central to commit all events",
        )
    finally:
        gw.stop()
        cen.stop()
    seqs, bodies, committed = procs.stored(database_url, "gw1")
    assert seqs == list(range(1, committed + 1))
    seen = procs.read_witness(witness)
    assert len(seen) == 20_000
    by_seq = dict(zip(seqs, bodies, strict=True))
    for seq, (run, n) in seen.items():
        assert by_seq[seq] == {"n": n, "run": run}


def test_two_aggregators_share_the_stream_exactly_once(broker: Broker, tmp_path: Path) -> None:
    """Province scale: several aggregator processes on one PostgreSQL, one shared subscription."""
    name, url = copy_pg_template(AT_HEAD)
    procs.prepare_central(url, [("H1", "gw1"), ("H2", "gw2")])
    centrals = [
        procs.central(
            procs.central_config(tmp_path, broker.port, url, instance=f"c{i}"),
            tmp_path / f"central{i}.log",
        )
        for i in (1, 2)
    ]
    gws = [
        procs.edge(
            procs.edge_config(
                tmp_path,
                broker.port,
                hall=h,
                gateway=g,
                generator={"enabled": True, "rate": 0, "total": 15_000},
                uplink={"batch_events": 100},
            ),
            tmp_path / f"{g}.log",
        )
        for h, g in (("H1", "gw1"), ("H2", "gw2"))
    ]
    try:
        for g in ("gw1", "gw2"):

            def delivered(gateway: str = g) -> bool:
                return procs.committed_through(url, gateway) >= 15_001

            procs.wait_until(delivered, 90, f"{g} delivered")
            seqs, _, committed = procs.stored(url, g)
            assert seqs == list(range(1, committed + 1))
        logs = [(tmp_path / f"central{i}.log").read_text() for i in (1, 2)]
        assert all("connected" in text for text in logs)
    finally:
        for p in gws + centrals:
            p.stop()
        drop_pg_database(name)


def test_last_will_marks_a_killed_gateway_offline(broker: Broker, tmp_path: Path) -> None:
    with scratch_database("sqlite", tmp_path, AT_HEAD) as url:
        last_will_marks_a_killed_gateway_offline(broker, tmp_path, url)


def last_will_marks_a_killed_gateway_offline(broker: Broker, tmp_path: Path, url: str) -> None:
    procs.prepare_central(url, [("H1", "gw1")])
    cen = procs.central(procs.central_config(tmp_path, broker.port, url), tmp_path / "c.log")
    gw = procs.edge(procs.edge_config(tmp_path, broker.port), tmp_path / "edge.log")
    try:
        procs.wait_until(lambda: procs.gateway_online(url, "gw1") is True, 30, "birth message")
        gw.kill9()  # no goodbye: only the broker's Last Will can tell central
        procs.wait_until(lambda: procs.gateway_online(url, "gw1") is False, 30, "Last Will")
    finally:
        gw.stop()
        cen.stop()
