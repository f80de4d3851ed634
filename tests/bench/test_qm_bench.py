"""$QM bridge figures on this machine (printed, nothing timed against a threshold).

Run: .venv/bin/pytest -m bench -s tests/bench/test_qm_bench.py
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime
from pathlib import Path

import pytest

from firmware_bridges.qm.codec import Called, Decoder, TicketIssued, encode
from firmware_bridges.qm.driver import QueueFeed
from firmware_bridges.qm.simulator import QueueMachineSimulator

pytestmark = pytest.mark.bench


def test_decoder_throughput() -> None:
    when = datetime(2026, 11, 21, 9, 30, 0)
    lines = [
        encode(
            TicketIssued(
                mseq=n,
                ticket=f"A{n % 1000:03d}",
                service="A01",
                waiting=n % 30,
                service_name="不动产登记",
                machine_time=when,
            )
        )
        if n % 2
        else encode(Called(mseq=n, ticket=f"A{n % 1000:03d}", window=n % 40, machine_time=when))
        for n in range(1, 200_001)
    ]
    stream = b"".join(lines)
    decoder = Decoder()
    started = time.perf_counter()
    for at in range(0, len(stream), 4096):
        decoder.feed(stream[at : at + 4096])
    valid = time.perf_counter() - started
    assert decoder.messages == len(lines)

    noise = random.Random(1).randbytes(20_000_000)
    decoder = Decoder()
    started = time.perf_counter()
    for at in range(0, len(noise), 4096):
        decoder.feed(noise[at : at + 4096])
    random_bytes = time.perf_counter() - started
    noise_rate = len(noise) / random_bytes / 1e6
    print(
        f"\nqm decoder: {len(lines) / valid:,.0f} valid lines/s "
        f"({len(stream) / valid / 1e6:.1f} MB/s); random bytes {noise_rate:.1f} MB/s"
    )


@pytest.mark.parametrize("kind", ["pty", "tcp"])
async def test_acknowledged_round_trips(kind: str, tmp_path: Path) -> None:
    link = {"pty_dir": tmp_path} if kind == "pty" else {"tcp_port": 0}
    rounds, per_round = 5, 1000  # one full machine buffer per round
    async with (
        QueueMachineSimulator(**link, heartbeat_interval=None) as machine,
        QueueFeed(machine.address) as feed,
    ):

        async def gateway() -> None:
            async for item in feed.messages():
                await feed.ack(item.mseq)

        consumer = asyncio.create_task(gateway())
        while not feed.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        for _ in range(rounds):
            for _ in range(per_round):
                machine.heartbeat()
            await machine.wait_drained(60)
        elapsed = time.perf_counter() - started
        consumer.cancel()
    assert not machine.evicted
    print(f"\nqm over {kind}: {rounds * per_round / elapsed:,.0f} acknowledged messages/s")
