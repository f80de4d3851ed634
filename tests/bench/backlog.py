"""Hallwatch's backlog drain of one gateway, end to end, for the drain benchmarks: a journal of
``n`` events, then the real gateway against a private Mosquitto and a real central."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from edge.app import Gateway
from edge.clock import Clock
from edge.config import GatewayConfig
from edge.journal import Journal
from protocols.events import GeneratorSample
from tests.support import procs
from tests.support.broker import Broker, free_port


@dataclass(frozen=True)
class OurDrain:
    seconds: float  # from the gateway's connect to central's commit and the ack in its journal
    events: int  # the journal's head: every one of them committed by central
    committed: int  # central's committed_through for the gateway after the drain


def drain_journal(tmp_path: Path, database_url: str, gateway: str = "gw1") -> OurDrain:
    """50,000 journaled events: from the gateway's connect to central's commit AND the ack
    being recorded in the gateway's journal (``gateway`` must be new to the database)."""
    broker = Broker(free_port(), tmp_path / "broker").start()
    procs.prepare_central(database_url, [("H1", gateway)])
    config = GatewayConfig.model_validate(
        {
            "hall": "H1",
            "gateway": gateway,
            "data_dir": str(tmp_path / "gw"),
            "broker": {"port": broker.port},
            "clock": {"assume_synced": True},
        }
    )
    cen = procs.central(
        procs.central_config(tmp_path, broker.port, database_url), tmp_path / "central.log"
    )

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
        await gw.start()
        while not gw.uplink.connected:  # noqa: ASYNC110 - polling is the measurement
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        while gw.journal.acked_seq < gw.journal.head_seq:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        head = gw.journal.head_seq
        await gw.stop()
        return elapsed, head

    try:
        asyncio.run(fill())
        time.sleep(2.0)  # central connected and subscribed
        elapsed, head = asyncio.run(drain())
        committed = procs.committed_through(database_url, gateway)
    finally:
        cen.stop()
        broker.stop()
    return OurDrain(elapsed, head, committed)
