"""Test doubles for the bus tests: the gateway's protocol duties, and a polling wait."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import serial

from firmware_bridges.ff68.codec import (
    Boot,
    Decoder,
    Event,
    Frame,
    InviteTimeout,
    KeyEvent,
    RetransmissionFilter,
)
from firmware_bridges.ff68.driver import EvaluatorBus


class Gateway:
    """What the gateway does with the bus, reduced to its protocol duties: take each event,
    "commit" it to the journal (2–5 ms), skip retransmissions, then echo it."""

    def __init__(self, bus: EvaluatorBus, commit_s: tuple[float, float] = (0.002, 0.005)) -> None:
        self.bus = bus
        self.commit_s = commit_s
        self.rng = random.Random(645)
        self.filter = RetransmissionFilter()
        self.journal: list[Event] = []  # each event once
        self.others: list[Frame] = []  # callers' and unknown frames
        self.received: list[tuple[float, Frame]] = []  # everything, repeats included
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for frame in self.bus.frames():
            self.received.append((time.monotonic(), frame))
            if not isinstance(frame, KeyEvent | InviteTimeout | Boot):
                self.others.append(frame)
                continue
            if not self.filter.is_repeat(frame, time.monotonic()):
                await asyncio.sleep(self.rng.uniform(*self.commit_s))
                self.journal.append(frame)
            await self.bus.send_echo(frame)

    async def __aenter__(self) -> Gateway:
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def key_events(self) -> list[KeyEvent]:
        return [e for e in self.journal if isinstance(e, KeyEvent)]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class RawLine:
    """A bare host on the line, for what the driver refuses to send (bad arguments, broadcasts,
    unknown commands): write bytes, wait, read back the frames."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, timeout=0)
        self.decoder = Decoder()

    async def ask(self, wire: bytes, wait: float = 0.2) -> list[Frame]:
        self.port.write(wire)
        await asyncio.sleep(wait)
        return self.decoder.feed(self.port.read(4096))

    def close(self) -> None:
        self.port.close()


def percentiles(values: list[float]) -> str:
    """'p50 … p90 … p99 … max …' in milliseconds."""
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"p50 {at(0.5):.1f} ms, p90 {at(0.9):.1f} ms, p99 {at(0.99):.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms (n={len(ordered)})"
    )
