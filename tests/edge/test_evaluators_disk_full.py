"""A key pressed while the journal's disk is full: not echoed, and the device's next copy,
once there is room again (a file deleted), is journaled as the evaluation itself, tied to its
invitation, not as a retransmission of a copy nobody kept. Real journal on a real 1 MiB tmpfs
(root only: mount), the evaluator simulated on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from edge.clock import Clock
from edge.config import EvaluatorBusConfig
from edge.devices.evaluators import EvaluatorSupervisor
from edge.journal import Journal, JournalError
from firmware_bridges.ff68.simulator import EvaluatorBusSimulator
from protocols.events import GeneratorSample
from tests.edge.test_journal_disk_full import tiny_disk  # noqa: F401  (the fixture)


async def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_key_refused_by_a_full_disk_counts_when_the_device_sends_it_again(
    tiny_disk: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tiny_disk / "journal.db"
    sim = EvaluatorBusSimulator(tmp_path / "ttyEVAL0", seed=3)
    await sim.start()
    sim.add(0x83)
    config = EvaluatorBusConfig(
        port=str(tmp_path / "ttyEVAL0"), poll_interval_s=10, devices=[{"addr": 0x83, "window": 3}]
    )
    async with Journal(
        path, Clock(), limit_bytes=50 * 1024 * 1024, ballast_bytes=96 * 1024
    ) as journal:
        supervisor = EvaluatorSupervisor(config, journal)
        task = asyncio.create_task(supervisor.run())
        try:
            await until(
                lambda: supervisor.bus is not None and supervisor.bus.connected, "the bus to open"
            )
            assert await supervisor.invite(3, "A001", "100233") == "ok"
            spacer = tiny_disk / "spacer"  # what the technician will delete
            spacer.write_bytes(b"\0" * 256 * 1024)
            for n in range(100_000):  # fill the disk
                try:
                    filler = GeneratorSample(n=n, run="fill", pad="z" * 900)
                    await journal.append("gen.sample", filler)
                except JournalError:
                    break
            else:
                raise AssertionError("the 1 MiB disk never filled")
            event = sim.press(0x83, 1)
            assert event is not None
            await until(lambda: supervisor.journal_failures >= 1, "the KEY to be refused")
            assert event.echoed_at is None
            spacer.unlink()  # room again
            await until(
                lambda: event.echoed_at is not None or bool(event.dropped), "the device's next copy"
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sim.stop()
        assert event.echoed_at is not None and event.attempts >= 2
        with sqlite3.connect(path) as db:
            keys = [
                json.loads(doc)["body"]
                for (doc,) in db.execute(
                    "SELECT doc FROM events WHERE kind = 'evaluator.key' ORDER BY seq"
                )
            ]
    assert [(k["key"], k["marks"], k["invitation"]["ticket"]) for k in keys] == [(1, [], "A001")]
