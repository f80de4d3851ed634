"""Backlog drain against the peer, in one run (``./run.sh bench``): the ThingsBoard IoT Gateway
drains 50,000 readings from its SQLite storage to a private Mosquitto, and Hallwatch drains
50,000 journaled events through the same Mosquitto build to central's commit on PostgreSQL and
the ack recorded in the journal. The two alternate, round after round, so that the load of the
machine falls on both alike. Figures in test-output/bench-peer-drain.json and
docs/province.md ("Backlog drain against the peer")."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest

from tests.bench import figures
from tests.bench.backlog import drain_journal
from tests.bench.peer_gateway import PEER_PACKAGE, drain, peer_python
from tests.support.broker import Broker, free_port

pytestmark = pytest.mark.bench
RESULTS = figures.OUTPUT / "bench-peer-drain.json"
N = 50_000
ROUNDS = int(os.environ.get("HALLWATCH_PEER_ROUNDS", "3"))


def record(name: str, value: float, unit: str, floor: str = "") -> None:
    figures.record(RESULTS, name, value, unit, floor)


def test_backlog_drain_against_the_peer(tmp_path: Path, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the target is set on PostgreSQL")
    python, why = peer_python()
    if python is None:
        pytest.skip(why)
    load_before = os.getloadavg()
    peer_s: list[float] = []
    ours_s: list[float] = []
    for r in range(ROUNDS):
        broker = Broker(free_port(), tmp_path / f"peer{r}" / "broker").start()
        try:
            peer = drain(python, tmp_path / f"peer{r}", broker.port, N)
        finally:
            broker.stop()
        # a bench must be able to fail: every reading arrived, whatever was sent twice
        assert peer.distinct == N
        ours = drain_journal(tmp_path / f"ours{r}", database_url, gateway=f"gw{r}")
        assert ours.events >= N  # the backlog and what the gateway journals as it starts
        assert ours.committed == ours.events
        peer_s.append(peer.seconds)
        ours_s.append(ours.seconds)
        print(
            f"\nround {r + 1}: peer {peer.seconds:.2f} s (first reading after"
            f" {peer.first_s:.2f} s, {peer.readings:,} readings received"
            f" for {N:,}, {peer.messages} MQTT messages, {peer.left_in_storage:,} rows left in"
            f" its storage), Hallwatch {ours.seconds:.2f} s ({ours.trace.summary()})"
        )
    load_after = os.getloadavg()
    peer_median, ours_median = statistics.median(peer_s), statistics.median(ours_s)
    record("peer_drain_50k_to_broker", peer_median, f"s, median of {ROUNDS}", PEER_PACKAGE)
    record("hallwatch_drain_50k_to_commit_and_ack", ours_median, f"s, median of {ROUNDS}")
    record("drain_speedup_over_peer", peer_median / ours_median, "×", "target ≥ 2")
    record("drain_load_average_1min", (load_before[0] + load_after[0]) / 2, "before/after mean")
    print(
        f"\npeer runs {[round(s, 2) for s in peer_s]} s, Hallwatch runs"
        f" {[round(s, 2) for s in ours_s]} s, load average {load_before[0]:.1f} → "
        f"{load_after[0]:.1f}"
    )
