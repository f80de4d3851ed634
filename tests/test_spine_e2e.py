"""The spine end to end on real parts: Mosquitto, the gateway process, central on both DBs."""

from __future__ import annotations

from pathlib import Path

from tests.support import procs
from tests.support.broker import Broker


def test_events_flow_from_generator_to_central_once(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    procs.prepare_central(database_url, [("H1", "gw1")])
    cen = procs.central(procs.central_config(tmp_path, broker.port, database_url),
                        tmp_path / "central.log")
    witness = tmp_path / "witness.txt"
    gw = procs.edge(procs.edge_config(tmp_path, broker.port, generator={
        "enabled": True, "rate": 0, "total": 20_000, "witness": str(witness)}),
        tmp_path / "edge.log")
    try:
        # 20,000 generated + 1 gateway.boot
        procs.wait_until(lambda: procs.stored(database_url, "gw1")[2] >= 20_001, 60,
                         "central to commit all events")
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
