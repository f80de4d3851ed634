"""Spine benchmarks on this machine, in one run (``./run.sh bench``). Figures, not asserts:
each prints its number and records it in test-output/bench-spine.json; the floors from the
issue are printed beside them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from central.spine.ingest import Ingestor
from central.spine.reading import Incoming
from central.spine.registry import register
from central.store import partitions
from central.store.db import make_engine
from central.store.migrate import upgrade
from edge.clock import Clock
from edge.journal import Journal
from protocols.events import GeneratorSample
from tests.bench import figures
from tests.bench.backlog import drain_journal
from tests.support.broker import Broker, free_port

pytestmark = pytest.mark.bench
RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "bench-spine.json"


def record(name: str, value: float, unit: str, floor: str = "") -> None:
    figures.record(RESULTS, name, value, unit, floor)


def test_journal_durable_append_rate(tmp_path: Path) -> None:
    async def go() -> float:
        async with Journal(tmp_path / "j.db", Clock(assume_synced=True)) as journal:
            n, inflight = 100_000, 2_000  # many devices waiting for their echo at once
            body = GeneratorSample(n=0, run="bench")
            start = time.perf_counter()
            for _ in range(n // inflight):
                await asyncio.gather(
                    *(journal.append_nowait("gen.sample", body) for _ in range(inflight))
                )
            return n / (time.perf_counter() - start)

    record("journal_durable_append", asyncio.run(go()), "events/s", "floor ≥ 20,000")


def _payloads(gateway: str, hall: str, n_batches: int, size: int) -> list[bytes]:
    boot = "ab" * 16
    out = []
    for b in range(n_batches):
        evs = [
            {
                "seq": b * size + i + 1,
                "utc": "2026-11-21T01:02:03.000000Z",
                "mono_ns": i,
                "boot": boot,
                "synced": True,
                "kind": "gen.sample",
                "body": {"n": b * size + i, "run": "bench"},
            }
            for i in range(size)
        ]
        out.append(
            json.dumps(
                {"v": 1, "hall": hall, "gateway": gateway, "sender_boot": boot, "events": evs},
                separators=(",", ":"),
            ).encode()
        )
    return out


def test_central_ingest_rate(database_url: str) -> None:
    """Validated, committed events/s of one aggregator's ingest (no broker in between)."""
    payloads = _payloads("gw1", "H1", 100, 1000)

    async def go() -> float:
        engine = make_engine(database_url)
        await upgrade(engine)
        # PostgreSQL: the events' month made first, as the aggregator does (else they land in
        # the DEFAULT partition)
        await partitions.ensure_ahead(engine, date(2026, 11, 21), ahead=0)
        await register(engine, "H1", "gw1")
        ingestor = Ingestor(engine)
        now = datetime.now(UTC)
        start = time.perf_counter()
        for i in range(0, len(payloads), 4):
            await ingestor.ingest(
                [Incoming("hw/v1/H1/gw1/events", p, now) for p in payloads[i : i + 4]]
            )
        rate = 100_000 / (time.perf_counter() - start)
        await engine.dispose()
        return rate

    db = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    record(
        f"central_ingest_{db}",
        asyncio.run(go()),
        "events/s",
        "floor ≥ 20,000 on SQLite" if db == "sqlite" else "",
    )


def test_backlog_drain_50k_end_to_end(tmp_path: Path, database_url: str) -> None:
    """50,000 journaled events: from the gateway's connect to central's commit AND the ack
    being recorded in the gateway's journal."""
    ours = drain_journal(tmp_path, database_url)
    assert ours.committed == ours.events
    db = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    record(f"backlog_drain_50k_{db}", ours.seconds, "s", "floor < 4 s")
    record(f"backlog_drain_rate_{db}", ours.events / ours.seconds, "events/s")


def test_broker_ceiling_mosquitto_pub_sub(tmp_path: Path) -> None:
    """The broker's own ceiling here, QoS 1, 200-byte payloads, with the C clients."""
    broker = Broker(free_port(), tmp_path / "broker").start()
    n = 50_000
    lines = tmp_path / "lines.txt"
    lines.write_text(("x" * 199 + "\n") * n)
    try:
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(broker.port), "-q", "1", "-t", "b", "-C", str(n)],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        start = time.perf_counter()
        with lines.open("rb") as feed:
            subprocess.run(
                ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", "b", "-l"],
                stdin=feed,
                check=True,
            )
        sub.wait(120)
        rate = n / (time.perf_counter() - start)
    finally:
        broker.stop()
    record("broker_ceiling_mosquitto_pub_sub", rate, "msg/s (QoS 1, 200 B, one message each)")


def test_print_summary() -> None:
    assert RESULTS.exists(), "the benchmarks above write their figures here"
    print("\n" + RESULTS.read_text())
