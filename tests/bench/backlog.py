"""Hallwatch's backlog drain of one gateway, end to end, for the drain benchmarks: a journal of
``n`` events, then the real gateway against a private Mosquitto and a real central."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.app import Gateway
from edge.clock import Clock
from edge.config import GatewayConfig
from edge.journal import Journal
from edge.sendwindow import AckDecision
from protocols.envelope import Ack
from protocols.events import GeneratorSample
from tests.support import procs
from tests.support.broker import Broker, free_port


@dataclass(frozen=True)
class OurDrain:
    seconds: float  # from the gateway's connect to central's commit and the ack in its journal
    events: int  # the journal's head: every one of them committed by central
    committed: int  # central's committed_through for the gateway after the drain
    trace: DrainTrace


@dataclass
class DrainTrace:
    """What the uplink did during the drain, in seconds from the connect: each batch published
    (its last seq, live lane or not) and each ack heard (central's committed seq)."""

    start: float
    published: list[tuple[float, int, bool]] = field(default_factory=list)
    acks: list[tuple[float, int]] = field(default_factory=list)
    rewinds: int = 0  # stalls, central's replays: any of them sends events again
    live_batches: int = 0
    central_cpu_s: float = 0.0  # CPU time central's process used during the drain
    gateway_cpu_s: float = 0.0  # and the gateway's (this process)

    def summary(self) -> str:
        if not self.published or not self.acks:
            return "no trace"
        gaps = [b[0] - a[0] for a, b in zip(self.acks, self.acks[1:], strict=False)]
        return (
            f"first publish {self.published[0][0]:.2f} s, first ack {self.acks[0][0]:.2f} s,"
            f" last publish {self.published[-1][0]:.2f} s, last ack {self.acks[-1][0]:.2f} s;"
            f" {len(self.published)} batches ({self.live_batches} live), {len(self.acks)} acks,"
            f" longest silence between acks {max(gaps, default=0):.2f} s,"
            f" rewinds {self.rewinds}; CPU: central {self.central_cpu_s:.2f} s,"
            f" gateway {self.gateway_cpu_s:.2f} s"
        )

    def timeline(self, step: float = 0.5) -> str:
        """Published and acknowledged seq every ``step`` seconds."""
        rows, t, end = [], 0.0, max(self.acks[-1][0] if self.acks else 0.0, step)
        while t <= end + step:
            pub = max((s for at, s, _ in self.published if at <= t), default=0)
            ack = max((s for at, s in self.acks if at <= t), default=0)
            rows.append(f"{t:5.1f}s pub {pub:6d} ack {ack:6d}")
            t += step
        return "\n".join(rows)


def drain_journal(
    tmp_path: Path, database_url: str, gateway: str = "gw1", uplink: dict[str, Any] | None = None
) -> OurDrain:
    """50,000 journaled events: from the gateway's connect to central's commit AND the ack
    being recorded in the gateway's journal (``gateway`` must be new to the database;
    ``uplink``: settings other than the defaults, to compare them)."""
    broker = Broker(free_port(), tmp_path / "broker").start()
    procs.prepare_central(database_url, [("H1", gateway)])
    config = GatewayConfig.model_validate(
        {
            "hall": "H1",
            "gateway": gateway,
            "data_dir": str(tmp_path / "gw"),
            "broker": {"port": broker.port},
            "clock": {"assume_synced": True},
            "uplink": uplink or {},
        }
    )
    cen = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )

    trace = DrainTrace(time.perf_counter())

    async def fill() -> None:
        async with Journal(config.journal_path, Clock(assume_synced=True)) as journal:
            for _ in range(25):
                await asyncio.gather(
                    *(
                        journal.append_nowait("gen.sample", GeneratorSample(n=i, run="b"))
                        for i in range(2000)
                    )
                )

    async def drain() -> tuple[float, int]:
        gw = Gateway(config)
        traced(gw, trace)
        await gw.start()
        while not gw.uplink.connected:  # noqa: ASYNC110 - polling is the measurement
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        trace.start = start
        central_cpu, own_cpu = cpu_seconds(central_pid), time.process_time()
        while gw.journal.acked_seq < gw.journal.head_seq:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        trace.central_cpu_s = cpu_seconds(central_pid) - central_cpu
        trace.gateway_cpu_s = time.process_time() - own_cpu
        head = gw.journal.head_seq
        trace.rewinds = gw.uplink.window.rewinds
        trace.live_batches = gw.uplink.window.live_batches
        await gw.stop()
        return elapsed, head

    try:
        asyncio.run(fill())
        # subscribed before the gateway connects: a fixed pause here was at times too short
        # under load, central missed the first window and the gateway resent it after 5 s
        cen.wait_for_log("central: connected to")
        settled(cen)
        assert cen.process is not None
        central_pid = cen.process.pid
        elapsed, head = asyncio.run(drain())
        committed = procs.committed_through(database_url, gateway)
    finally:
        cen.stop()
        broker.stop()
    return OurDrain(elapsed, head, committed, trace)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def settled(proc: procs.Proc, quiet_s: float = 0.3, timeout: float = 120) -> None:
    """Until central has done what it does once at startup (its first passes of the ladder,
    correlation, outbox): its CPU time stops growing for ``quiet_s``. A gateway reconnecting
    after an outage meets a central that has long been running; without this the drain's first
    second shares central's loop with its start."""
    assert proc.process is not None
    pid, deadline = proc.process.pid, time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now
    raise AssertionError(f"central still busy {timeout} s after it connected")


def traced(gw: Gateway, trace: DrainTrace) -> None:
    """Record every batch the uplink's window is told of and every ack it hears."""
    window = gw.uplink.window
    published, on_ack = window.on_published, window.on_ack

    def on_published(last: int, *, acked: int, now: float, live: bool = False) -> None:
        trace.published.append((time.perf_counter() - trace.start, last, live))
        published(last, acked=acked, now=now, live=live)

    def heard(ack: Ack, *, journal_epoch: str, acked: int, now: float) -> AckDecision:
        trace.acks.append((time.perf_counter() - trace.start, ack.committed_through))
        return on_ack(ack, journal_epoch=journal_epoch, acked=acked, now=now)

    window.on_published = on_published  # type: ignore[method-assign]
    window.on_ack = heard  # type: ignore[method-assign]
