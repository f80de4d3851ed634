"""Losing the PostgreSQL primary mid-stream: the replica is promoted, central carries on.

A private primary and its synchronous streaming replica (tests/support/pg_pair.py), a private
Mosquitto, the real central process reading a multi-host URL with
``target_session_attrs=read-write``, and a real gateway whose generator sends events while the
primary is killed with ``kill -9`` and the replica promoted (``pg_ctl promote``), as the
runbook in docs/province.md says. Then, on the new primary alone: every event the gateway
journaled is stored exactly once, with the body it was given, and the gateway's journal is
acknowledged to its head. Prints the time from the promotion to central's next commit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.broker import Broker
from tests.support.pg_pair import Pair, pg_bin, start_pair

pytestmark = pytest.mark.skipif(pg_bin() is None, reason="no PostgreSQL server binaries")

RATE = 1_000  # events/s from the gateway's generator
TOTAL = 5_000  # 5 s of them
KILL_AT = 1_500  # committed on the primary when it is killed


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    started = start_pair(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def journal_meta(tmp_path: Path, key: str) -> int:
    with sqlite3.connect(tmp_path / "edge-gw1" / "journal.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def test_primary_killed_replica_promoted_nothing_lost_nothing_doubled(
    broker: Broker, pair: Pair, tmp_path: Path
) -> None:
    procs.prepare_central(pair.url(), [("H1", "gw1")])
    central = procs.central(
        procs.central_config(tmp_path, broker.port, pair.url()), tmp_path / "central.log"
    )
    witness = tmp_path / "witness.txt"
    cfg = procs.edge_config(
        tmp_path,
        broker.port,
        generator={"enabled": True, "rate": RATE, "total": TOTAL, "witness": str(witness)},
    )
    gateway: procs.Proc | None = None
    old, new = pair.url_of(pair.primary), pair.url_of(pair.replica)
    try:
        # a live stream, not a backlog: central listens before the gateway's first event
        central.wait_for_log("central: connected to", 60)
        gateway = procs.edge(cfg, tmp_path / "edge.log")
        procs.wait_until(
            lambda: procs.committed_through(old, "gw1") >= KILL_AT, 60, "central to commit"
        )
        pair.primary.kill9()
        killed = time.monotonic()
        pair.replica.promote()
        promoted = time.monotonic()
        at_promotion = procs.committed_through(new, "gw1")
        assert at_promotion < TOTAL, "the stream ended before the primary was killed"
        stored_then = procs.count_events(new, "gw1")
        procs.wait_until(
            lambda: procs.count_events(new, "gw1") > stored_then,
            60,
            "central to store events on the promoted replica",
            interval=0.05,
        )
        writing = time.monotonic()
        procs.wait_until(
            lambda: procs.committed_through(new, "gw1") > at_promotion,
            60,
            "central to move the gateway's committed sequence on the promoted replica",
            interval=0.05,
        )
        committing = time.monotonic()
        print(
            f"\nfailover: promotion {promoted - killed:.2f} s; central stored events again "
            f"{writing - promoted:.2f} s after it, moved committed_through past {at_promotion} "
            f"{committing - promoted:.2f} s after it"
        )
        procs.wait_until(lambda: procs.witnessed(witness) >= TOTAL, 60, "the generator to finish")
        procs.wait_until(
            lambda: procs.committed_through(new, "gw1") >= procs.journal_head(tmp_path),
            60,
            "central to commit the whole journal",
        )
        procs.wait_until(
            lambda: journal_meta(tmp_path, "acked_seq") >= procs.journal_head(tmp_path),
            30,
            "the gateway to hear central's acknowledgement of its whole journal",
        )
        gateway.stop()
        gateway = None
        head = procs.journal_head(tmp_path)
        assert journal_meta(tmp_path, "acked_seq") == head
        seqs, bodies, committed = procs.stored(new, "gw1")
        assert committed == head, (committed, head)
        assert seqs == list(range(1, head + 1)), "gaps or doubles on the new primary"
        by_seq = dict(zip(seqs, bodies, strict=True))
        seen = procs.read_witness(witness)
        assert len(seen) == TOTAL
        wrong = [s for s, (run, n) in seen.items() if by_seq.get(s) != {"n": n, "run": run}]
        assert not wrong, f"events missing or altered on the new primary: {wrong[:10]}"
        assert central.alive, "central stopped instead of carrying on"
        print(f"failover test: all checked {time.monotonic() - killed:.1f} s after the kill")
    finally:
        if gateway is not None:
            gateway.stop()
        central.kill9()  # its clean stop is tested elsewhere
